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
