"""The voice student's training (torch): the GE2E teacher's first two LSTM layers give frame targets, a one-layer
LSTM learns them, and ``build_voice_onnx`` writes it (or the teacher) as the ONNX graph that ``emovae.voice``
runs: mel power (batch, frames, 40) in, the mean and std over frames of the last layer (512) out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import EmovaeError
from ..voice import N_MELS

TORCH_TO_ONNX_GATES = (0, 3, 1, 2)  # torch stacks gates (i, f, g, o); ONNX (i, o, f, c)

TEACHER_FILE = Path(__file__).parent / "teacher" / "ge2e-2layers.npz"  # float16 state dict: training only


def load_teacher(path: str | Path = TEACHER_FILE) -> list[dict]:
    """The teacher's LSTM layers as state-dict arrays (float32), from ``TEACHER_FILE``."""
    if not Path(path).is_file():
        raise EmovaeError(f"teacher weights {path} are missing: reinstall emovae (the voice student needs them "
                          "to train)")
    with np.load(path) as z:
        n = len({k.rsplit("_l", 1)[1] for k in z.files})
        return [{w: z[f"{w}_l{k}"].astype(np.float32) for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
                for k in range(n)]


def _torch_lstm(layers: list[dict]):
    import torch

    lstm = torch.nn.LSTM(layers[0]["weight_ih"].shape[1], layers[0]["weight_hh"].shape[1], len(layers),
                         batch_first=True)
    lstm.load_state_dict({f"{w}_l{k}": torch.from_numpy(np.asarray(a, np.float32)) for k, layer in enumerate(layers)
                          for w, a in layer.items()})
    return lstm.eval()


def padded(seqs: list[np.ndarray], n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, n, D) zero-padded float32 (n: the longest, by default) and the lengths (N,)."""
    lengths = np.array([len(a) for a in seqs])
    out = np.zeros((len(seqs), int(lengths.max()) if n is None else n, seqs[0].shape[1]), np.float32)
    for i, a in enumerate(seqs):
        out[i, :len(a)] = a
    return out, lengths


def column_moments(blocks) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (+1e-6) per column over the rows of all ``blocks`` (each (rows, D)), merged block by block
    in float64 (Chan et al.), so the rows are never held at once."""
    n, mean, m2 = 0, None, None
    for b in blocks:
        k = len(b)
        if not k:
            continue
        bm = b.mean(0)
        bm2 = ((b - bm) ** 2).sum(0)
        if mean is None:
            n, mean, m2 = k, bm, bm2
            continue
        delta = bm - mean
        total = n + k
        mean = mean + delta * (k / total)
        m2 = m2 + bm2 + delta ** 2 * (n * k / total)
        n = total
    return mean, np.sqrt(m2 / n) + 1e-6


def iter_teacher_frames(mels, layers: list[dict], batch: int = 128):
    """The teacher's last-layer output (frames, units) of each mel power matrix (frames, 40), float16, one clip
    at a time, computed ``batch`` clips at a time (``mels``: any sequence, e.g. a ``RaggedStore``)."""
    import torch

    lstm = _torch_lstm(layers)
    with torch.no_grad():
        for i in range(0, len(mels), batch):
            x, lengths = padded([mels[j] for j in range(i, min(i + batch, len(mels)))])
            h = lstm(torch.from_numpy(x))[0].numpy()
            for j, n in enumerate(lengths):
                yield h[j, :n].astype(np.float16)


def teacher_frames(mels, layers: list[dict], batch: int = 128) -> list[np.ndarray]:
    """The teacher's last-layer output (frames, units) of each mel power matrix (frames, 40), float16."""
    return list(iter_teacher_frames(mels, layers, batch))


def log_scaled(m: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The student's input of a mel power matrix (frames, 40): 10 log10 of the bands, standardised, float32."""
    return ((10 * np.log10(m.astype(np.float64) + 1e-10) - mean) / std).astype(np.float32)


def epoch_rows(source: np.ndarray, copies_per_epoch: int, rng: np.random.Generator) -> np.ndarray:
    """Rows (indices into ``source``) one epoch reads: every row whose ``source`` is -1 (a clip itself) and, for
    each clip, ``copies_per_epoch`` of its copies (rows whose ``source`` is that clip's index) drawn without
    replacement; a clip with fewer copies gives all of them. ``source`` (rows,) int."""
    source = np.asarray(source)
    copy = np.flatnonzero(source >= 0)
    order = copy[np.lexsort((rng.random(len(copy)), source[copy]))]  # grouped by clip, random within a clip
    s = source[order]
    first = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]  # where each clip's run of copies starts
    rank = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
    return np.sort(np.r_[np.flatnonzero(source < 0), order[rank < copies_per_epoch]])


def train_student(mels, targets, *, hidden: int = 128, epochs: int = 40,
                  batch: int = 64, lr: float = 3e-3, seed: int = 0, progress: bool = False,
                  source: np.ndarray | None = None, copies_per_epoch: int = 0) -> dict:
    """Fit a one-layer LSTM of ``hidden`` units and a linear map to reproduce a teacher frame by frame: mels,
    per clip (frames, 40) mel power; targets, the teacher's output (frames, units) of each. The student reads the
    log of the bands standardised per band; its outputs are the targets z-scored per unit (mean squared error
    over the clips' frames; AdamW, one-cycle schedule, gradients clipped at 1). Returns the arguments of
    ``build_voice_onnx``: {"layers", "projection", "log_scaler"}, and "loss" per epoch. ``progress``: a bar
    over the epochs (about 8 s each for 4,800 clips on 2 CPU threads). ``mels`` and ``targets``: sequences of
    arrays (lists, or ``emovae.ragged.RaggedStore`` to keep a large corpus on disk: each batch reads its clips).
    ``source`` (rows,): -1 for a clip, the clip's row for a training copy of it; with ``copies_per_epoch`` > 0
    each epoch reads every clip and that many of its copies, drawn afresh (``epoch_rows``): an epoch costs
    (1 + copies_per_epoch) / (1 + copies) of a pass over every row."""
    import torch
    from torch import nn
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    # per clip, never padded all at once (the padded targets alone took about 5 GB for the dev corpus with copies),
    # and the inputs and targets standardised one batch at a time (not held for the whole corpus)
    in_mean, in_std = column_moments(10 * np.log10(m.astype(np.float64) + 1e-10) for m in mels)
    t_mean, t_std = column_moments(a.astype(np.float64) for a in targets)
    lengths = np.asarray(mels.lengths if hasattr(mels, "lengths") else [len(a) for a in mels])
    L = torch.from_numpy(np.asarray(lengths))
    lstm = nn.LSTM(mels[0].shape[1], hidden, 1, batch_first=True)
    out = nn.Linear(hidden, targets[0].shape[1])
    params = list(lstm.parameters()) + list(out.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    sample = source is not None and copies_per_epoch > 0
    rng = np.random.default_rng(seed)
    n_rows = len(epoch_rows(source, copies_per_epoch, rng)) if sample else len(mels)  # the same count every epoch
    steps = epochs * int(np.ceil(n_rows / batch))
    # one cycle, warm-up over 10 % of the steps and at least 1.5 (torch divides by zero at exactly one); a run
    # of fewer than 4 steps (a smoke test) keeps the rate constant
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=max(0.1, 1.5 / steps))
             if steps >= 4 else torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0))
    losses = []
    bar = tqdm(range(epochs), desc="voice student", unit="epoch", disable=not progress, leave=False)
    for _ in bar:
        total, frames = 0.0, 0
        # batches of clips of similar length (less padding to run through), in a random order
        use = epoch_rows(source, copies_per_epoch, rng) if sample else np.arange(len(mels))
        by_len = use[np.lexsort((torch.randperm(len(use), generator=gen).numpy(), lengths[use]))]
        batches = [torch.from_numpy(by_len[i:i + batch]) for i in range(0, len(use), batch)]
        for b in torch.randperm(len(batches), generator=gen).tolist():
            idx = batches[b]
            n = int(L[idx].max())
            mask = (torch.arange(n)[None] < L[idx, None]).float()[:, :, None]
            rows = idx.tolist()
            xb = torch.from_numpy(padded([log_scaled(mels[i], in_mean, in_std) for i in rows], n)[0])
            tb = torch.from_numpy(padded([((targets[i] - t_mean) / t_std).astype(np.float32) for i in rows], n)[0])
            loss = (((out(lstm(xb)[0]) - tb) ** 2) * mask).sum() / (mask.sum() * tb.shape[2])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            total, frames = total + float(loss.detach()) * float(mask.sum()), frames + float(mask.sum())
        losses.append(total / frames)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    state = {k: v.detach().numpy().copy() for k, v in lstm.state_dict().items()}
    return {"layers": [{w: state[f"{w}_l0"] for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}],
            "projection": (out.weight.detach().numpy().copy(), out.bias.detach().numpy().copy()),
            "log_scaler": (in_mean.astype(np.float32), in_std.astype(np.float32)), "loss": losses}


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


def build_voice_onnx(layers: list[dict], bits: int | None = 4, block: int = 64, *,
                     log_scaler: tuple[np.ndarray, np.ndarray] | None = None,
                     projection: tuple[np.ndarray, np.ndarray] | None = None, frames: bool = False):
    """An ONNX model ``mel`` (batch, frames, 40) -> ``voice`` (batch, 2 x units) from stacked LSTM layers given as
    torch state-dict arrays {weight_ih, weight_hh, bias_ih, bias_hh}: the mean and std over frames of the last
    layer's output. Weights stored at ``bits``: 4 or 8 (block quantised, read through DequantizeLinear), 16 (float16)
    or None (float32). ``log_scaler`` (mean, std), each (40,): the layers read (10 log10(mel) - mean) / std instead
    of the mel power (a student's input). ``projection`` (W (units, H), b (units,)): a linear map of every frame
    before the statistics. ``frames``: output ``frames`` (frames, batch, units) instead (the teacher's targets)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name: str, a: np.ndarray) -> str:
        if bits == 16 and a.size >= 64:
            inits.append(numpy_helper.from_array(a.astype(np.float16), f"{name}_half"))
            nodes.append(helper.make_node("Cast", [f"{name}_half"], [name], to=TensorProto.FLOAT))
        else:
            inits.append(numpy_helper.from_array(a.astype(np.float32), name))
        return name

    def weight(name: str, w: np.ndarray) -> str:
        w = w.reshape(-1, w.shape[-1])  # (4H, in)
        if bits in (None, 16):
            return const(name, w[None])
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

    x = "mel"
    if log_scaler is not None:
        inits += [numpy_helper.from_array(np.array(1e-10, np.float32), "floor"),
                  numpy_helper.from_array(np.array(10 / np.log(10), np.float32), "to_db"),
                  numpy_helper.from_array(np.asarray(log_scaler[0], np.float32), "in_mean"),
                  numpy_helper.from_array(np.asarray(log_scaler[1], np.float32), "in_std")]
        nodes += [helper.make_node("Add", ["mel", "floor"], ["mel_floor"]),
                  helper.make_node("Log", ["mel_floor"], ["mel_ln"]),
                  helper.make_node("Mul", ["mel_ln", "to_db"], ["mel_db"]),
                  helper.make_node("Sub", ["mel_db", "in_mean"], ["mel_c"]),
                  helper.make_node("Div", ["mel_c", "in_std"], ["mel_in"])]
        x = "mel_in"
    nodes.append(helper.make_node("Transpose", [x], ["mel_t"], perm=[1, 0, 2]))  # (frames, batch, 40)
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
    if projection is not None:
        nodes.append(helper.make_node("MatMul", [x, const("proj_w", np.asarray(projection[0]).T)], ["proj_xw"]))
        nodes.append(helper.make_node("Add", ["proj_xw", const("proj_b", np.asarray(projection[1]))], ["proj"]))
        x = "proj"
    if frames:
        nodes.append(helper.make_node("Identity", [x], ["frames"]))
        output = helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["frames", "batch", "units"])
    else:
        inits.append(numpy_helper.from_array(np.array([0], np.int64), "time_axis"))
        nodes += [helper.make_node("ReduceMean", [x, "time_axis"], ["mean"], keepdims=1),
                  helper.make_node("Sub", [x, "mean"], ["centred"]),
                  helper.make_node("Mul", ["centred", "centred"], ["squared"]),
                  helper.make_node("ReduceMean", ["squared", "time_axis"], ["var"], keepdims=0),
                  helper.make_node("Sqrt", ["var"], ["std"]),
                  helper.make_node("Squeeze", ["mean", "time_axis"], ["mean_flat"]),
                  helper.make_node("Concat", ["mean_flat", "std"], ["voice"], axis=1)]
        output = helper.make_tensor_value_info("voice", TensorProto.FLOAT, ["batch", "features"])
    graph = helper.make_graph(nodes, "emovae_voice", [helper.make_tensor_value_info("mel", TensorProto.FLOAT,
                                                                                    ["batch", "frames", N_MELS])],
                              [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], producer_name="emovae")
    model.ir_version = 10
    model.doc_string = ("LSTM layers over 40 mel bands (the first two of Resemblyzer's GE2E speaker encoder, "
                        "Apache-2.0, or a student of them), mean and std of the last over frames; see "
                        "emovae/train/teacher/NOTICE.md")
    return model
