"""Voice statistics (features stage): how a frozen speaker encoder's middle layer sees the clip.

The first two LSTM layers of Resemblyzer's GE2E speaker encoder (Wan et al. 2018; weights Apache-2.0, see
``voice/NOTICE.md``) run over 40 mel bands of the clip's speech span; the mean and std over frames of the second
layer's output (512 values) join the utterance statistics. A linear head on them alone reaches 0.70 balanced
accuracy on unseen speakers (benchmarks/experiments.md, sections 24 and 25). The encoder ships as one ONNX file
with 4-bit weights (``VOICE_FILE``) and runs in onnxruntime; ``build_voice_onnx`` writes it from float weights.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import EmovaeError

VOICE_FILE = Path(__file__).parent / "voice" / "ge2e-2layers.onnx"
SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms Hann window, 10 ms step: the encoder's own input
HOP = 160
N_MELS = 40
TARGET_DBFS = -30.0  # clips quieter than this are levelled up to it (never down), as the encoder was trained
HIDDEN = 256
TORCH_TO_ONNX_GATES = (0, 3, 1, 2)  # torch stacks gates (i, f, g, o); ONNX (i, o, f, c)


def voice_names() -> tuple[str, ...]:
    """Names of the voice statistics: the second layer's mean per unit, then its std per unit."""
    return tuple(f"voice_{fn}_{i}" for fn in ("mean", "std") for i in range(HIDDEN))


def level(y: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """``y`` scaled up so that its mean power is ``target_dbfs`` (unchanged when already louder or silent)."""
    power = float(np.mean(np.square(y, dtype=np.float64))) if y.size else 0.0
    if power <= 0:
        return y
    gain_db = target_dbfs - 10 * np.log10(power)
    return y * np.float32(10 ** (gain_db / 20)) if gain_db > 0 else y


def encoder_mel(y: np.ndarray) -> np.ndarray:
    """The encoder's input: mel band power (frames, 40) of a 16 kHz signal, frames centred every 10 ms
    (librosa.feature.melspectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40))."""
    from .features import _window, frame_signal, mel_filterbank

    frames = frame_signal(np.asarray(y, dtype=np.float32), N_FFT, HOP)
    spec = np.fft.rfft(frames * _window(N_FFT, N_FFT), axis=1)
    power = spec.real ** 2 + spec.imag ** 2
    return (power @ mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS).T).astype(np.float32)


@lru_cache(maxsize=2)
def _session(path: str):
    """One onnxruntime session per encoder file and process (one thread: clips run in parallel processes)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise EmovaeError("the voice statistics need onnxruntime: pip install 'emovae[runtime]'") from exc
    if not Path(path).is_file():
        raise EmovaeError(f"voice encoder {path} is missing: reinstall emovae, or turn the voice statistics off "
                          "(FeatureConfig(voice=False))")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.disable_quant_qdq", "1")  # fold the 4-bit weights once, at load
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def voice_statistics(y: np.ndarray, path: str | Path = VOICE_FILE) -> np.ndarray:
    """(512,) float32: mean and std over frames of the encoder's second layer on a 16 kHz speech signal
    (already cut to its speech span)."""
    mel = encoder_mel(level(np.asarray(y, dtype=np.float32)))
    return _session(str(path)).run(None, {"mel": mel[None]})[0][0]


# ------------------------------------------------------------------------------------------- building
def quantize_blocks(w: np.ndarray, bits: int = 4, block: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric quantisation of a matrix (rows, cols) in blocks of ``block`` columns per row (one block when
    cols < block): integers (rows, cols) in [-2^(bits-1), 2^(bits-1) - 1] and float16 scales
    (rows, ceil(cols / block)); w ~ q * scale."""
    rows, cols = w.shape
    bs = cols if cols < block else block
    nb = -(-cols // bs)
    padded = np.zeros((rows, nb * bs), np.float64)
    padded[:, :cols] = w
    top = 2 ** (bits - 1) - 1
    scale = (np.abs(padded.reshape(rows, nb, bs)).max(axis=2) / top).astype(np.float16)
    safe = np.where(scale == 0, 1, scale).astype(np.float64)
    q = np.clip(np.round(padded.reshape(rows, nb, bs) / safe[:, :, None]), -top - 1, top)
    return q.reshape(rows, nb * bs)[:, :cols].astype(np.int8), scale


def build_voice_onnx(layers: list[dict], bits: int | None = 4, block: int = 64):
    """An ONNX model ``mel`` (batch, frames, 40) -> ``voice`` (batch, 512) from stacked LSTM layers given as
    torch state-dict arrays {weight_ih, weight_hh, bias_ih, bias_hh}; weights stored at ``bits`` (4 or 8: block
    quantised, read through DequantizeLinear) or float32 (None)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def weight(name: str, w: np.ndarray) -> str:
        w = w.reshape(-1, w.shape[-1])  # (4H, in)
        if bits is None:
            inits.append(numpy_helper.from_array(w[None].astype(np.float32), name))
            return name
        q, scale = quantize_blocks(w, bits, block)
        if bits == 4:  # two values per byte, the first in the low nibble
            nib = (q.ravel() & 0x0F).astype(np.uint8)
            nib = np.append(nib, np.uint8(0)) if nib.size % 2 else nib
            inits.append(helper.make_tensor(f"{name}_q", TensorProto.INT4, (1, *q.shape),
                                            (nib[0::2] | (nib[1::2] << 4)).tobytes(), raw=True))
        else:
            inits.append(numpy_helper.from_array(q[None], f"{name}_q"))
        inits.append(numpy_helper.from_array(scale[None], f"{name}_scale"))
        bs = q.shape[1] if q.shape[1] < block else block
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_scale"], [f"{name}_half"],
                                      axis=2, block_size=bs))
        nodes.append(helper.make_node("Cast", [f"{name}_half"], [name], to=TensorProto.FLOAT))
        return name

    nodes.append(helper.make_node("Transpose", ["mel"], ["mel_t"], perm=[1, 0, 2]))  # (frames, batch, 40)
    x = "mel_t"
    for k, layer in enumerate(layers):
        hidden = layer["weight_hh"].shape[1]

        def gates(a):  # torch gate order -> ONNX gate order along the first axis
            return np.concatenate([a[g * hidden:(g + 1) * hidden] for g in TORCH_TO_ONNX_GATES])

        w = weight(f"W{k}", gates(np.asarray(layer["weight_ih"], np.float32)))
        r = weight(f"R{k}", gates(np.asarray(layer["weight_hh"], np.float32)))
        b = np.concatenate([gates(np.asarray(layer["bias_ih"], np.float32)),
                            gates(np.asarray(layer["bias_hh"], np.float32))])[None]
        inits.append(numpy_helper.from_array(b.astype(np.float16), f"B{k}_half"))
        nodes.append(helper.make_node("Cast", [f"B{k}_half"], [f"B{k}"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("LSTM", [x, w, r, f"B{k}"], [f"Y{k}"], hidden_size=hidden))
        inits.append(numpy_helper.from_array(np.array([1], np.int64), f"axis1_{k}"))
        nodes.append(helper.make_node("Squeeze", [f"Y{k}", f"axis1_{k}"], [f"h{k}"]))  # (frames, batch, H)
        x = f"h{k}"
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "time_axis"))
    nodes += [helper.make_node("ReduceMean", [x, "time_axis"], ["mean"], keepdims=1),
              helper.make_node("Sub", [x, "mean"], ["centred"]),
              helper.make_node("Mul", ["centred", "centred"], ["squared"]),
              helper.make_node("ReduceMean", ["squared", "time_axis"], ["var"], keepdims=0),
              helper.make_node("Sqrt", ["var"], ["std"]),
              helper.make_node("Squeeze", ["mean", "time_axis"], ["mean_flat"]),
              helper.make_node("Concat", ["mean_flat", "std"], ["voice"], axis=1)]
    graph = helper.make_graph(nodes, "emovae_voice", [helper.make_tensor_value_info("mel", TensorProto.FLOAT,
                                                                                    ["batch", "frames", N_MELS])],
                              [helper.make_tensor_value_info("voice", TensorProto.FLOAT, ["batch", "features"])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], producer_name="emovae")
    model.ir_version = 10
    model.doc_string = ("First two LSTM layers of Resemblyzer's GE2E speaker encoder (Apache-2.0), mean and std "
                        "of the second layer over frames; see emovae/voice/NOTICE.md")
    return model
