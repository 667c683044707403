"""ONNX export: the file holds the weights at half size without changing the model, carries what inference needs
as metadata, and a parity check that catches a file that no longer matches torch."""

import copy
import json

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from emovae.errors import EmovaeError  # noqa: E402
from emovae.modelfile import DIMENSION_OUTPUTS, INPUTS, METADATA_KEY, ONNX_FILE, OUTPUTS, read_model_json  # noqa: E402
from emovae.train.export import (check_parity, export_onnx, half_initializers, onnx_metadata,  # noqa: E402
                                 round_to_half)


def random_inputs(model, n=5, seed=1):
    rng = np.random.default_rng(seed)
    net = model.net_
    seq = (net.seq_mean.numpy() + net.seq_std.numpy() * rng.standard_normal((n, net.vae.seq_len,
                                                                             len(model.frame_names_))))
    stats = net.stats_mean.numpy() + net.stats_std.numpy() * rng.standard_normal((n, len(model.stat_names_)))
    return seq.astype(np.float32), stats.astype(np.float32)


def test_the_exported_file_matches_torch_and_the_check_catches_a_mismatch(tiny_model, tiny_model_dir):
    path = tiny_model_dir / ONNX_FILE
    seq, stats = random_inputs(tiny_model)
    spk = (np.tile(stats.mean(0), (len(stats), 1)), np.full_like(stats, 0.5))  # the adapted head's inputs too
    assert check_parity(tiny_model, path, seq, stats, atol=1e-5, spk=spk) <= 1
    changed = copy.deepcopy(tiny_model)  # the shared model stays as it is
    import torch

    with torch.no_grad():  # the head ignores its inputs (a bias shift can vanish in a saturated softmax)
        changed.net_.classifier.weight.zero_()
    with pytest.raises(EmovaeError, match="differs from torch"):
        check_parity(changed, path, seq, stats)


def test_the_file_is_self_contained_lean_and_carries_model_json(tiny_model_dir):
    proto = onnx.load(str(tiny_model_dir / ONNX_FILE))
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert [i.name for i in proto.graph.input] == list(INPUTS)
    assert [o.name for o in proto.graph.output] == list(OUTPUTS + DIMENSION_OUTPUTS)  # with arousal and valence
    assert not any(n.metadata_props for n in proto.graph.node) and not proto.graph.value_info  # the trace is stripped
    meta = {p.key: p.value for p in proto.metadata_props}
    assert set(meta) == {METADATA_KEY}
    assert json.loads(meta[METADATA_KEY]) == json.loads(json.dumps(onnx_metadata(read_model_json(tiny_model_dir))))


def test_weights_are_stored_at_half_precision_without_changing_the_model(tiny_model, tiny_model_dir):
    proto = onnx.load(str(tiny_model_dir / ONNX_FILE))
    kinds = {t.name: t.data_type for t in proto.graph.initializer}
    assert kinds["classifier.weight"] == onnx.TensorProto.FLOAT16  # a fitted weight: float16 on disk
    assert kinds["stats_mean"] == onnx.TensorProto.FLOAT  # a scaler is not rounded, so it stays float32
    for name, w in tiny_model.net_.named_parameters():  # every fitted weight holds a float16 value
        np.testing.assert_array_equal(w.detach().numpy(), w.detach().numpy().astype(np.float16), err_msg=name)


def test_round_to_half_rounds_parameters_to_float16_values():
    import torch

    layer = torch.nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1 + 1e-4, 0.1, -3.14159], [1e-8, 65504.0, 2.0]]))
    round_to_half(layer)
    w = layer.weight.detach().numpy()
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w, w.astype(np.float16).astype(np.float32))
    assert w[0, 0] == 1.0 and w[1, 2] == 2.0


def test_onnx_metadata_leaves_names_and_map_points_to_model_json():
    meta = {"classes": ["a", "b"], "history": {}, "scalers": {}, "stat_names": ["s"], "frame_names": ["f"],
            "speaker_prior": {"mean": [0.0], "std": [1.0]},
            "latent_map": {"method": "pca", "mean": [0.0], "components": [[1.0]], "points": [[0.0, 1.0]],
                           "labels": ["a"]}}
    keep = onnx_metadata(meta)
    assert set(keep) == {"classes", "speaker_prior", "latent_map"}
    assert keep["latent_map"] == {"method": "pca", "mean": [0.0], "components": [[1.0]]}
    assert "points" in meta["latent_map"]  # the model.json content itself is untouched


def test_half_initializers_converts_only_exact_values():
    from onnx import TensorProto, helper, numpy_helper

    from emovae.modelfile import onnx_session

    exact = np.arange(128, dtype=np.float32) / 4  # every value is a float16 value
    inexact = exact + np.float32(1e-4)
    nodes = [helper.make_node("Add", ["x", "a"], ["y"]), helper.make_node("Add", ["y", "b"], ["z"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [128])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [128])],
                              [numpy_helper.from_array(exact, "a"), numpy_helper.from_array(inexact, "b")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    assert half_initializers(proto) == 1
    kinds = {t.name: t.data_type for t in proto.graph.initializer}
    assert kinds == {"a": TensorProto.FLOAT16, "b": TensorProto.FLOAT}
    onnx.checker.check_model(proto)
    x = np.ones(128, np.float32)
    np.testing.assert_array_equal(onnx_session(proto.SerializeToString()).run(None, {"x": x})[0], x + exact + inexact)


@pytest.mark.slow
def test_export_onnx_writes_a_file_that_runs_alone(tiny_model, tiny_model_dir, tmp_path):
    from emovae.runtime import Recognizer

    path = export_onnx(tiny_model, tmp_path / "x.onnx", read_model_json(tiny_model_dir))
    seq, stats = random_inputs(tiny_model, seed=3)
    assert check_parity(tiny_model, path, seq, stats, atol=1e-5) <= 1
    rec, ref = Recognizer.load(path), Recognizer.load(tiny_model_dir)
    from ..conftest import SR, voice_like

    y = voice_like(170, 1.2, seed=8)
    np.testing.assert_array_equal(rec.predict_proba(y, SR), ref.predict_proba(y, SR))
