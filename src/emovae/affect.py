"""Arousal and valence: where each emotion category sits on the circumplex, and the training targets of the
dimension heads. One table (``COORDINATES``) is the only place the coordinates live; the heads are trained on
it (``train.estimator``), the benchmarks score against the groups derived from it.

Coordinates, each in [-1, 1] (arousal: calm/sleepy -1 .. activated +1; valence: unpleasant -1 .. pleasant +1),
place the categories on Russell's circumplex (J. A. Russell, "A circumplex model of affect", J. Personality and
Social Psychology 39(6), 1980: angry, afraid, disgusted high arousal and unpleasant; happy and surprised high
arousal and pleasant; sad and bored low arousal and unpleasant; calm low arousal and pleasant; neutral the
centre). For angry, fearful, disgust and sad, the magnitudes follow the NRC VAD lexicon v1's ratings of the
words anger, fear, disgust and sadness (S. M. Mohammad, ACL 2018; rescaled from 0..1 to -1..1 and rounded to
0.05): anger A 0.73 V -0.67, fear A 0.68 V -0.85, disgust A 0.55 V -0.90, sadness A -0.42 V -0.90.
"""

from __future__ import annotations

import numpy as np

from .data import parse_name
from .errors import DataError

#: category -> (arousal, valence); categories not listed have no dimension target
COORDINATES: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "calm": (-0.6, 0.4),
    "happy": (0.5, 0.8),
    "sad": (-0.4, -0.9),
    "angry": (0.75, -0.65),
    "fearful": (0.7, -0.85),
    "disgust": (0.55, -0.9),
    "surprised": (0.7, 0.3),
    "boredom": (-0.7, -0.3),
}

#: RAVDESS's "strong" intensity: arousal raised by this much, valence moved this factor away from 0 (clipped to
#: [-1, 1]); "normal" takes the table's coordinates. Neutral has no strong take in RAVDESS.
STRONG_AROUSAL_SHIFT = 0.25
STRONG_VALENCE_GAIN = 1.25

#: the groups the benchmarks score (AUROC): categories whose side of 0 is clear from the table; neutral and
#: disgust (arousal) and neutral and surprised (valence) sit near the middle and are left out of those scores
HIGH_AROUSAL = ("happy", "angry", "fearful", "surprised")
LOW_AROUSAL = ("neutral", "calm", "sad", "boredom")
POSITIVE = ("happy", "calm")
NEGATIVE = ("sad", "angry", "fearful", "disgust")

DIMENSIONS = ("arousal", "valence")


def dimension_targets(labels, intensity=None) -> np.ndarray:
    """Targets (N, 2) float64, arousal then valence, of labels (N,) of category names; NaN rows for a label the
    table does not place. ``intensity`` (N,) of "normal" / "strong" / None (RAVDESS's field) refines a clip: a
    strong take is more activated and further from neutral valence (``STRONG_*``)."""
    labels = [str(v) for v in np.asarray(labels, dtype=object).ravel()]
    out = np.array([COORDINATES.get(v, (np.nan, np.nan)) for v in labels], dtype=np.float64).reshape(-1, 2)
    if intensity is not None:
        strong = np.array([v == "strong" for v in np.asarray(intensity, dtype=object).ravel()], dtype=bool)
        if len(strong) != len(labels):
            raise ValueError(f"intensity: {len(strong)} values for {len(labels)} labels")
        out[strong, 0] = np.clip(out[strong, 0] + STRONG_AROUSAL_SHIFT, -1.0, 1.0)
        out[strong, 1] = np.clip(out[strong, 1] * STRONG_VALENCE_GAIN, -1.0, 1.0)
    return out


def affect_text(arousal: float | None, valence: float | None) -> str:
    """``"  arousal +0.42 valence -0.31"``, to end a text line of ``emovae predict`` or ``stream``; "" without them
    (a model without the heads, a clip that is not speech)."""
    return "" if arousal is None else f"  arousal {arousal:+.2f} valence {valence:+.2f}"


def side(labels, high: tuple[str, ...], low: tuple[str, ...]) -> np.ndarray:
    """(N,) float: 1 for a label in ``high``, 0 in ``low``, NaN otherwise (left out of a binary score)."""
    return np.array([1.0 if v in high else 0.0 if v in low else np.nan for v in np.asarray(labels).ravel()])


def ravdess_fields(paths) -> tuple[list[str | None], list[str | None]]:
    """The emotion and intensity ("normal" / "strong") that each RAVDESS-named file's name gives (None, None for
    any other file): targets follow what was acted, whatever label map a model was trained with."""
    emotions: list[str | None] = []
    intensities: list[str | None] = []
    for p in paths:
        try:
            u = parse_name(p)
        except DataError:
            u = None
        emotions.append(u.emotion if u else None)
        intensities.append(u.intensity if u else None)
    return emotions, intensities
