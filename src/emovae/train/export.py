"""ONNX export of a trained network (pooled frames + statistics -> probabilities, latent, novelty terms),
with the model description embedded as metadata and a parity check against torch."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import EmovaeError, require
from ..modelfile import INPUTS, METADATA_KEY, ONNX_FILE, onnx_session, read_model_json


def export_onnx(model, path: str | os.PathLike, meta: dict, *, check: bool = True, atol: float = 1e-4) -> Path:
    """Write the fitted ``model``'s network to one self-contained ONNX file (no external data).

    ``meta`` (the model.json content: labels, feature config, names) is stored in the file's metadata so
    the file alone can run. With ``check``, onnxruntime's outputs are compared with torch's within ``atol``.
    """
    require("onnx", "train")
    require("onnxscript", "train")
    import contextlib
    import io
    import logging

    import onnx
    import torch

    net = model.net_.eval()
    T, F, S = net.vae.seq_len, net.seq_mean.numel(), net.stats_mean.numel()
    rng = np.random.default_rng(0)
    seq = torch.from_numpy(rng.standard_normal((2, T, F)).astype(np.float32)) * net.seq_std + net.seq_mean
    stats = torch.from_numpy(rng.standard_normal((2, S)).astype(np.float32)) * net.stats_std + net.stats_mean
    spk_mean = stats + 0.1 * net.stats_std
    spk_std = (0.5 * net.stats_std).expand_as(stats).clone()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch")
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the exporter logs optional-op warnings (torchvision) and progress
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()):
                torch.onnx.export(net, (seq, stats, spk_mean, spk_std), str(path), input_names=list(INPUTS),
                                  output_names=list(net.output_names), dynamic_shapes=({0: batch},) * 4,
                                  external_data=False, dynamo=True)
    finally:
        quiet.setLevel(level)
    proto = onnx.load(str(path))
    half_initializers(proto)
    strip_trace(proto)
    keep = onnx_metadata(meta)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(keep)
    proto.doc_string = f"emovae emotion recognizer; classes: {', '.join(meta['classes'])}"
    onnx.save(proto, str(path))
    if check:
        check_parity(model, path, seq.numpy(), stats.numpy(), atol=atol, spk=(spk_mean.numpy(), spk_std.numpy()))
    return path


def half_initializers(proto, min_size: int = 64) -> int:
    """Store every float32 initializer of ``proto`` whose values float16 holds exactly (a fitted model's
    weights: ``round_to_half``) as float16, read through a Cast back to float32 that onnxruntime folds when the
    session loads: the same function at half the file size. Returns how many were converted."""
    from onnx import TensorProto, helper, numpy_helper

    graph, renamed, casts = proto.graph, {}, []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        a = numpy_helper.to_array(init)
        h = a.astype(np.float16)
        if a.size < min_size or not np.array_equal(h.astype(np.float32), a):
            continue
        init.CopyFrom(numpy_helper.from_array(h, init.name))
        renamed[init.name] = f"{init.name}__float"
        casts.append(helper.make_node("Cast", [init.name], [renamed[init.name]], to=TensorProto.FLOAT,
                                      name=f"{init.name}__cast"))
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return len(casts)


def strip_trace(proto) -> None:
    """Drop what the exporter records for debugging (each node's source-stack metadata, the intermediate
    value shapes): about 100 KB of a 870 KB file that onnxruntime never reads."""
    for node in proto.graph.node:
        del node.metadata_props[:]
    del proto.graph.value_info[:]


def round_to_half(module) -> None:
    """Round a network's parameters in place to the nearest float16 values (kept as float32), so that
    ``half_initializers`` stores them at half size without changing what the model computes."""
    import torch

    with torch.no_grad():
        for param in module.parameters():
            param.copy_(param.half().float())


def onnx_metadata(meta: dict) -> dict:
    """What a bare ONNX file carries of model.json: what inference needs (labels, configs, speaker prior,
    novelty threshold, the latent map's projection). Left to model.json: training history, scalers (in the
    graph), feature names, and the training clips' map positions (the figure's background), to keep the shipped
    model under 1 MB."""
    keep = {k: v for k, v in meta.items() if k not in ("history", "scalers", "stat_names", "frame_names")}
    if isinstance(keep.get("latent_map"), dict):
        keep["latent_map"] = {k: v for k, v in keep["latent_map"].items() if k not in ("points", "labels")}
    return keep


def check_parity(model, path, seq: np.ndarray, stats: np.ndarray, atol: float = 1e-4, rtol: float = 1e-5,
                 spk: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Largest difference between torch and onnxruntime outputs relative to atol + rtol * |torch| (<= 1 is a
    pass; the novelty output sums thousands of terms, so it needs the relative part); raises above 1."""
    import torch

    spk_mean, spk_std = spk if spk is not None else (stats + 0.1, np.ones_like(stats))
    feeds = {"seq": seq, "stats": stats, "spk_mean": spk_mean, "spk_std": spk_std}
    with torch.no_grad():
        ref = [t.numpy() for t in model.net_(*(torch.from_numpy(feeds[k]) for k in INPUTS))]
    out = onnx_session(path).run(list(model.net_.output_names), feeds)
    diff = max(float(np.max(np.abs(a - b) / (atol + rtol * np.abs(a)))) for a, b in zip(ref, out))
    if diff > 1:
        raise EmovaeError(f"ONNX export of {path} differs from torch beyond atol {atol:g} + rtol {rtol:g}")
    return diff


def export_model_dir(model, directory: str | os.PathLike) -> Path:
    """Export a saved model folder's network to ``directory/model.onnx`` with its model.json as metadata."""
    return export_onnx(model, Path(directory) / ONNX_FILE, read_model_json(directory))
