"""Figures for reports: confusion matrix, 2-D latent map, training curves.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global state,
no ``plt.show()``); save it with :func:`save_figure`. matplotlib (extra ``plot``) and scikit-learn
(extra ``train``, for :func:`project_2d`) are imported only when a function is called.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .data import EMOTIONS
from .errors import ParameterError, require

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

#: One fixed colour per emotion (matplotlib tab10 hex values), the same in every figure.
#: Red and green are not both used, so angry stays distinct for red-green colour blindness.
EMOTION_COLORS: dict[str, str] = {
    "neutral": "#7f7f7f",  # grey
    "calm": "#17becf",  # cyan
    "happy": "#ff7f0e",  # orange
    "sad": "#1f77b4",  # blue
    "angry": "#d62728",  # red
    "fearful": "#9467bd",  # purple
    "disgust": "#8c564b",  # brown
    "surprised": "#e377c2",  # pink
}
# Colours for labels outside EMOTIONS (cycled): the two tab10 colours not used above.
_EXTRA_COLORS = ("#bcbd22", "#2ca02c")


def _figure(figsize: tuple[float, float]) -> Figure:
    require("matplotlib", "plot")
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def class_colors(classes) -> dict[str, str]:
    """A colour per class: the emotion palette, then distinct colours for a model's own labels, in order."""
    unknown: list[str] = []
    return {c: _color_for(c, unknown) for c in classes}


def _color_for(label: str, unknown: list[str]) -> str:
    if label in EMOTION_COLORS:
        return EMOTION_COLORS[label]
    if label not in unknown:
        unknown.append(label)
    return _EXTRA_COLORS[unknown.index(label) % len(_EXTRA_COLORS)]


def _highlight_color(text: str) -> str:
    """Colour of the first emotion named as a word in text ("demo happy" -> happy), else white."""
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in EMOTION_COLORS:
            return EMOTION_COLORS[word]
    return "white"


def _as_label_strings(labels: Sequence[str] | np.ndarray, n: int, what: str) -> list[str]:
    """Labels as strings; integer labels are indices into EMOTIONS."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or len(arr) != n:
        raise ParameterError(f"{what} has {arr.size} labels for {n} points; give one label per point")
    if arr.dtype.kind in "iu":
        if n and (arr.min() < 0 or arr.max() >= len(EMOTIONS)):
            raise ParameterError(f"{what}: integer labels must be 0..{len(EMOTIONS) - 1} (indices into EMOTIONS)")
        return [EMOTIONS[int(i)] for i in arr]
    return [str(x) for x in arr]


def confusion_figure(
    confusion: np.ndarray, labels: Sequence[str], normalize: bool = True, title: str = ""
) -> Figure:
    """Confusion matrix (k, k) of counts, rows = true, columns = predicted, labels (k,).

    normalize=True colours and prints row-normalised recall in % with the count in small text.
    """
    cm = np.asarray(confusion, dtype=float)
    labels = [str(x) for x in labels]
    k = len(labels)
    if cm.ndim != 2 or cm.shape != (k, k):
        raise ParameterError(f"confusion has shape {cm.shape}; expected ({k}, {k}) for {k} labels")
    if not np.all(np.isfinite(cm)) or np.any(cm < 0):
        raise ParameterError("confusion must hold finite, non-negative counts")

    rows = cm.sum(axis=1, keepdims=True)
    recall = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0) * 100.0
    values = recall if normalize else cm
    vmax = 100.0 if normalize else max(float(cm.max()), 1.0)

    side = max(4.0, 0.6 * k + 2.5)
    fig = _figure((side + 1.0, side))
    ax = fig.add_subplot()
    im = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("recall (%)" if normalize else "count")

    is_int = np.allclose(cm, np.round(cm))
    for i in range(k):
        for j in range(k):
            dark = values[i, j] > 0.6 * vmax
            color = "white" if dark else "black"
            count = f"{int(round(cm[i, j]))}" if is_int else f"{cm[i, j]:.3g}"
            if normalize:
                ax.text(j, i - 0.1, f"{recall[i, j]:.0f}%", ha="center", va="center", fontsize=9, color=color)
                ax.text(j, i + 0.25, count, ha="center", va="center", fontsize=6, color=color)
            else:
                ax.text(j, i, count, ha="center", va="center", fontsize=9, color=color)

    ax.set_xticks(range(k), labels, rotation=45, ha="right")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    return fig


def latent_map(
    points2d: np.ndarray,
    labels: Sequence[str] | np.ndarray,
    title: str = "",
    highlight: np.ndarray | None = None,
    highlight_labels: Sequence[str] | None = None,
) -> Figure:
    """Scatter of points2d (n, 2) coloured by emotion labels (n,) (names, or indices into EMOTIONS).

    highlight (m, 2) points are drawn larger with a black edge and annotated with highlight_labels (m,),
    filled with the colour of the emotion their label names ("demo: happy"), else white.
    """
    pts = np.asarray(points2d, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ParameterError(f"points2d has shape {pts.shape}; expected (n, 2) (use project_2d first)")
    names = _as_label_strings(labels, len(pts), "labels")

    fig = _figure((6.5, 5.5))
    ax = fig.add_subplot()
    unknown: list[str] = []
    present = [e for e in EMOTIONS if e in names] + sorted(set(names) - set(EMOTIONS))
    names_arr = np.asarray(names, dtype=object)
    for label in present:
        sel = names_arr == label
        ax.scatter(pts[sel, 0], pts[sel, 1], s=14, alpha=0.75, color=_color_for(label, unknown),
                   label=label, linewidths=0)

    if highlight is not None:
        hl = np.asarray(highlight, dtype=float).reshape(-1, 2) if np.size(highlight) else np.empty((0, 2))
        hnames = None
        if highlight_labels is not None:
            hnames = _as_label_strings(highlight_labels, len(hl), "highlight_labels")
        colors = [_highlight_color(h) for h in hnames] if hnames is not None else ["white"] * len(hl)
        ax.scatter(hl[:, 0], hl[:, 1], s=110, c=colors, edgecolors="black", linewidths=1.5, zorder=3)
        if hnames is not None:
            for (x, y), text in zip(hl, hnames):
                ax.annotate(text, (x, y), xytext=(6, 6), textcoords="offset points", fontsize=9,
                            fontweight="bold", zorder=4)

    if present:
        ax.legend(title="emotion", fontsize=8, title_fontsize=9, markerscale=1.5, loc="best")
    ax.set_xlabel("dim 1")
    ax.set_ylabel("dim 2")
    if title:
        ax.set_title(title)
    return fig


def project_2d(z: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Project latent codes z (n, d) to (n, 2) with "pca" or "tsne" (scikit-learn); d == 1 is zero-padded."""
    method = str(method).lower()
    if method not in ("pca", "tsne"):
        raise ParameterError(f"unknown projection method {method!r}; use 'pca' or 'tsne'")
    x = np.asarray(z, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ParameterError(f"z has shape {x.shape}; expected (n, d)")
    n, d = x.shape
    if n < 3:
        raise ParameterError(f"need at least 3 points to project, got {n}")
    if d < 1:
        raise ParameterError("z has no dimensions (d == 0)")
    if not np.all(np.isfinite(x)):
        raise ParameterError("z contains NaN or infinite values")
    if d == 1:
        x = np.hstack([x, np.zeros((n, 1))])
        if method == "pca":
            return x - x.mean(axis=0)

    if method == "pca":
        decomposition = require("sklearn.decomposition", "train")
        return decomposition.PCA(n_components=2, random_state=seed).fit_transform(x)
    manifold = require("sklearn.manifold", "train")
    tsne = manifold.TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3.0), init="pca",
                         learning_rate="auto", random_state=seed)
    return tsne.fit_transform(x)


def curves_figure(history: dict[str, list[float]], title: str = "") -> Figure:
    """Training curves: each history key -> values per epoch (length n_epochs).

    Keys containing "kl" go on the right subplot, all others on the left; log y if all values > 0.
    """
    series = {k: np.asarray(v, dtype=float).ravel() for k, v in history.items() if len(v)}
    if not series:
        raise ParameterError("history is empty; nothing to plot")
    groups = [
        ("reconstruction", [k for k in series if "kl" not in k.lower()]),
        ("KL", [k for k in series if "kl" in k.lower()]),
    ]
    groups = [(name, keys) for name, keys in groups if keys]

    fig = _figure((5.0 * len(groups), 4.0))
    axes = [fig.add_subplot(1, len(groups), i + 1) for i in range(len(groups))]
    for ax, (name, keys) in zip(axes, groups):
        for key in keys:
            y = series[key]
            ax.plot(np.arange(1, len(y) + 1), y, label=key, marker="o" if len(y) < 15 else None,
                    markersize=3)
        finite = np.concatenate([series[k][np.isfinite(series[k])] for k in keys])
        if finite.size and np.all(finite > 0):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save fig as PNG (dpi 120) at path, creating parent folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    return path
