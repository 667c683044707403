import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from emovae.export import check_parity, export_onnx  # noqa: E402
from emovae.model import EmotionRecognizer  # noqa: E402
from emovae.runtime import read_model_json  # noqa: E402


def test_export_parity_and_metadata(tiny_model_dir, tmp_path):
    import onnx

    model = EmotionRecognizer.load(tiny_model_dir)
    path = export_onnx(model, tmp_path / "x.onnx", read_model_json(tiny_model_dir))
    proto = onnx.load(str(path))
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert {p.key for p in proto.metadata_props} == {"emovae_model_json"}
    assert [i.name for i in proto.graph.input] == ["seq", "stats", "spk_mean", "spk_std"]
    assert not any(n.metadata_props for n in proto.graph.node) and not proto.graph.value_info  # strip_trace
    rng = np.random.default_rng(1)
    T, F, S = model.net_.vae.seq_len, len(model.frame_names_), len(model.stat_names_)
    seq = (rng.standard_normal((5, T, F)) * 3).astype(np.float32)
    stats = rng.standard_normal((5, S)).astype(np.float32)
    assert check_parity(model, path, seq, stats, atol=1e-4) <= 1
    # the parity check can fail: a perturbed torch model no longer matches the exported file
    import torch

    with torch.no_grad():
        model.net_.classifier.weight.zero_()  # the head ignores its inputs (a bias shift can vanish in a saturated softmax)
    from emovae.errors import EmovaeError

    with pytest.raises(EmovaeError, match="differs from torch"):
        check_parity(model, path, seq, stats)


def test_onnx_metadata_leaves_names_and_map_points_to_model_json():
    from emovae.export import onnx_metadata

    meta = {"classes": ["a", "b"], "history": {}, "scalers": {}, "stat_names": ["s"], "frame_names": ["f"],
            "speaker_prior": {"mean": [0.0], "std": [1.0]},
            "latent_map": {"method": "pca", "mean": [0.0], "components": [[1.0]], "points": [[0.0, 1.0]],
                           "labels": ["a"]}}
    keep = onnx_metadata(meta)
    assert set(keep) == {"classes", "speaker_prior", "latent_map"}
    assert keep["latent_map"] == {"method": "pca", "mean": [0.0], "components": [[1.0]]}
    assert "points" in meta["latent_map"]  # the model.json content itself is untouched


def test_weights_are_stored_at_half_precision_without_changing_the_model(tiny_model_dir):
    import onnx

    proto = onnx.load(str(tiny_model_dir / "model.onnx"))
    kinds = {t.name: t.data_type for t in proto.graph.initializer}
    assert kinds["classifier.weight"] == onnx.TensorProto.FLOAT16  # a fitted weight: float16 on disk
    assert kinds["stats_mean"] == onnx.TensorProto.FLOAT  # a scaler is not rounded, so it stays float32
    back = EmotionRecognizer.load(tiny_model_dir)  # weights read back from the float16 initializers
    assert str(back.net_.classifier.weight.dtype) == "torch.float32"
    rng = np.random.default_rng(2)
    seq = rng.standard_normal((3, back.net_.vae.seq_len, len(back.frame_names_))).astype(np.float32)
    stats = rng.standard_normal((3, len(back.stat_names_))).astype(np.float32)
    assert check_parity(back, tiny_model_dir / "model.onnx", seq, stats, atol=1e-5) <= 1


def test_half_initializers_converts_only_exact_values():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from emovae.export import half_initializers

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
    import onnxruntime as ort

    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.ones(128, np.float32)
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], x + exact + inexact)
