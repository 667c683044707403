"""Write emovae's voice encoder (src/emovae/voice/ge2e-2layers.onnx) from Resemblyzer's pretrained GE2E weights.

Needs `pip install resemblyzer webrtcvad-wheels` (build time only; emovae never imports it). The first two of
the encoder's three LSTM layers are kept (benchmarks/experiments.md, sections 24 and 25), weights at 4 bits.

    python tools/build_voice_encoder.py [--bits 4] [--out src/emovae/voice/ge2e-2layers.onnx]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def teacher_layers(n_layers: int = 2) -> list[dict]:
    """The first ``n_layers`` LSTM layers of Resemblyzer's pretrained encoder as numpy state-dict arrays."""
    from resemblyzer import VoiceEncoder

    state = VoiceEncoder("cpu", verbose=False).lstm.state_dict()
    return [{n: state[f"{n}_l{k}"].numpy() for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            for k in range(n_layers)]


def main(argv=None) -> int:
    import onnx

    from emovae.voice import VOICE_FILE, build_voice_onnx

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bits", type=int, default=4, choices=[4, 8, 32], help="32: float32 weights")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--out", default=str(VOICE_FILE))
    args = ap.parse_args(argv)
    model = build_voice_onnx(teacher_layers(args.layers), None if args.bits == 32 else args.bits)
    onnx.checker.check_model(model)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, args.out)
    print(f"{args.out}: {Path(args.out).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
