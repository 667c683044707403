"""Write the GE2E teacher's first two LSTM layers from Resemblyzer's pretrained weights: the float16 state dict
that emovae trains its voice student from (src/emovae/train/teacher/ge2e-2layers.npz, `--npz`), or an ONNX graph of
them at 4, 8 or 32 bits (`--onnx`, docs/research.md section 25).

Needs `pip install resemblyzer webrtcvad-wheels` (build time only; emovae never imports it) and emovae installed
with its train extra (`pip install -e '.[train]'`; the ONNX graph is ``emovae.train.student.build_voice_onnx``).

    python tools/build_voice_encoder.py --npz src/emovae/train/teacher/ge2e-2layers.npz
    python tools/build_voice_encoder.py --onnx /tmp/voice4.onnx --bits 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def teacher_layers(n_layers: int = 2) -> list[dict]:
    """The first ``n_layers`` LSTM layers of Resemblyzer's pretrained encoder as numpy state-dict arrays."""
    from resemblyzer import VoiceEncoder

    state = VoiceEncoder("cpu", verbose=False).lstm.state_dict()
    return [{n: state[f"{n}_l{k}"].numpy() for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            for k in range(n_layers)]


def main(argv=None) -> int:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npz", help="write the float16 state dict here")
    ap.add_argument("--onnx", help="write an ONNX graph of the layers here")
    ap.add_argument("--bits", type=int, default=4, choices=[4, 8, 16, 32], help="the ONNX graph's weights")
    ap.add_argument("--layers", type=int, default=2)
    args = ap.parse_args(argv)
    layers = teacher_layers(args.layers)
    if args.npz:
        np.savez_compressed(args.npz, **{f"{n}_l{k}": a.astype(np.float16) for k, layer in enumerate(layers)
                                         for n, a in layer.items()})
        print(f"{args.npz}: {Path(args.npz).stat().st_size} bytes")
    if args.onnx:
        import onnx

        from emovae.train.student import build_voice_onnx

        model = build_voice_onnx(layers, None if args.bits == 32 else args.bits)
        onnx.checker.check_model(model)
        onnx.save(model, args.onnx)
        print(f"{args.onnx}: {Path(args.onnx).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
