import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from emovae.data import EMOTIONS  # noqa: E402
from emovae.errors import ParameterError  # noqa: E402
from emovae.plots import (  # noqa: E402
    EMOTION_COLORS,
    confusion_figure,
    curves_figure,
    latent_map,
    project_2d,
    save_figure,
)


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_import_does_not_load_matplotlib():
    code = "import emovae.plots, sys; assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_emotion_colors_fixed_and_distinct():
    assert list(EMOTION_COLORS) == list(EMOTIONS)
    assert len(set(EMOTION_COLORS.values())) == len(EMOTIONS)


def test_confusion_perfect_diagonal_shows_100_percent(tmp_path):
    cm = np.diag([5, 3, 7, 2])
    labels = list(EMOTIONS[:4])
    fig = confusion_figure(cm, labels, title="perfect")
    assert len(fig.axes) == 2  # matrix + colour bar
    ax = fig.axes[0]
    texts = _texts(ax)
    assert texts.count("100%") == 4
    assert texts.count("0%") == 12
    assert {"5", "3", "7", "2"} <= set(texts)  # counts in small text
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    out = save_figure(fig, tmp_path / "sub" / "cm.png")
    assert out.exists() and out.stat().st_size > 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_confusion_row_normalisation_and_empty_row():
    cm = np.array([[3, 1, 0], [0, 0, 0], [2, 2, 4]])
    texts = _texts(confusion_figure(cm, ["a", "b", "c"]).axes[0])
    assert "75%" in texts and "25%" in texts and "50%" in texts
    raw = _texts(confusion_figure(cm, ["a", "b", "c"], normalize=False).axes[0])
    assert not any(t.endswith("%") for t in raw)
    assert len(raw) == 9


def test_confusion_shape_mismatch():
    with pytest.raises(ParameterError):
        confusion_figure(np.eye(3), ["a", "b"])


def test_latent_map_with_highlight(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(40, 2))
    labels = [EMOTIONS[i % 4] for i in range(40)]
    fig = latent_map(pts, labels, title="latent", highlight=pts[:2], highlight_labels=["demo A", "demo B"])
    ax = fig.axes[0]
    assert len(fig.axes) == 1
    assert len(ax.collections) == 4 + 1  # one per emotion + highlight
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == list(EMOTIONS[:4])
    assert _texts(ax) == ["demo A", "demo B"]
    # the colour of each emotion is the fixed one
    from matplotlib.colors import to_hex

    for coll, emo in zip(ax.collections[:4], EMOTIONS[:4]):
        assert to_hex(coll.get_facecolor()[0]) == EMOTION_COLORS[emo]
    highlight = ax.collections[4]
    assert [to_hex(c) for c in highlight.get_facecolors()] == ["#ffffff", "#ffffff"]
    assert to_hex(highlight.get_edgecolors()[0]) == "#000000"
    named = latent_map(pts, labels, highlight=pts[:2], highlight_labels=["demo: happy", "sad"]).axes[0]
    assert [to_hex(c) for c in named.collections[-1].get_facecolors()] == [
        EMOTION_COLORS["happy"], EMOTION_COLORS["sad"]]
    out = save_figure(fig, tmp_path / "latent.png")
    assert out.stat().st_size > 0


def test_latent_map_integer_labels_and_bad_shape():
    pts = np.zeros((6, 2))
    fig = latent_map(pts, np.array([0, 1, 2, 0, 1, 2]))
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == list(EMOTIONS[:3])
    with pytest.raises(ParameterError):
        latent_map(np.zeros((6, 3)), ["neutral"] * 6)
    with pytest.raises(ParameterError):
        latent_map(pts, ["neutral"] * 5)


def test_project_2d_shapes():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(30, 8))
    assert project_2d(z).shape == (30, 2)
    t = project_2d(z, method="tsne", seed=0)
    assert t.shape == (30, 2) and np.all(np.isfinite(t))
    np.testing.assert_allclose(t, project_2d(z, method="tsne", seed=0))  # seeded
    one = project_2d(rng.normal(size=(10, 1)))
    assert one.shape == (10, 2) and np.allclose(one[:, 1], 0)
    assert project_2d(rng.normal(size=(5, 1)), method="tsne").shape == (5, 2)
    assert project_2d(z[:3], method="tsne").shape == (3, 2)


@pytest.mark.parametrize("z,method", [
    (np.zeros((10, 4)), "umap"),
    (np.zeros((2, 4)), "pca"),
    (np.zeros((2, 4)), "tsne"),
])
def test_project_2d_errors(z, method):
    with pytest.raises(ParameterError):
        project_2d(z, method=method)


def test_curves_figure(tmp_path):
    history = {
        "train_recon": [1.0, 0.5, 0.3],
        "val_recon": [1.1, 0.6, 0.4],
        "train_kl": [0.1, 0.2, 0.25],
        "val_kl": [0.1, 0.2, 0.3],
        "val_accuracy": [0.2, 0.4, 0.5],
    }
    fig = curves_figure(history, title="training")
    assert len(fig.axes) == 2
    left, right = fig.axes
    assert {l.get_label() for l in left.get_lines()} == {"train_recon", "val_recon", "val_accuracy"}
    assert {l.get_label() for l in right.get_lines()} == {"train_kl", "val_kl"}
    assert left.get_yscale() == "log" and right.get_yscale() == "log"
    assert list(left.get_lines()[0].get_xdata()) == [1, 2, 3]
    out = save_figure(fig, tmp_path / "curves.png")
    assert out.stat().st_size > 0


def test_curves_figure_linear_when_not_positive_and_single_group():
    fig = curves_figure({"train_loss": [1.0, 0.0, -0.5]})
    assert len(fig.axes) == 1
    assert fig.axes[0].get_yscale() == "linear"
    with pytest.raises(ParameterError):
        curves_figure({})
