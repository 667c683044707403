"""affect: the category coordinates, the intensity refinement and the groups the benchmarks score."""

import numpy as np
import pytest

from emovae.affect import (COORDINATES, HIGH_AROUSAL, LOW_AROUSAL, NEGATIVE, POSITIVE, STRONG_AROUSAL_SHIFT,
                           affect_text, dimension_targets, ravdess_fields, side)


def test_coordinates_lie_on_the_circumplex_as_the_groups_say():
    for name, (a, v) in COORDINATES.items():
        assert -1 <= a <= 1 and -1 <= v <= 1, name
    assert all(COORDINATES[c][0] > 0.3 for c in HIGH_AROUSAL) and all(COORDINATES[c][0] <= 0 for c in LOW_AROUSAL)
    assert all(COORDINATES[c][1] > 0.3 for c in POSITIVE) and all(COORDINATES[c][1] < -0.5 for c in NEGATIVE)
    assert COORDINATES["neutral"] == (0.0, 0.0)


def test_targets_follow_the_table_and_unknown_labels_are_nan():
    t = dimension_targets(["angry", "sad", "whistling"])
    np.testing.assert_array_equal(t[:2], [COORDINATES["angry"], COORDINATES["sad"]])
    assert np.isnan(t[2]).all() and t.shape == (3, 2)


def test_a_strong_take_is_more_activated_and_further_from_neutral_valence():
    normal, strong = dimension_targets(["sad", "sad"], ["normal", "strong"])
    assert strong[0] == pytest.approx(normal[0] + STRONG_AROUSAL_SHIFT)
    assert strong[1] < normal[1] < 0
    assert dimension_targets(["angry"], ["strong"])[0, 0] <= 1.0  # clipped to the scale
    with pytest.raises(ValueError, match="intensity"):
        dimension_targets(["sad", "sad"], ["strong"])


def test_ravdess_names_give_the_acted_emotion_and_intensity(tmp_path):
    emotions, intensities = ravdess_fields(["a/03-01-02-02-01-01-05.wav", "b/dis-f1-b1.wav"])
    assert emotions == ["calm", None] and intensities == ["strong", None]


def test_side_marks_the_two_groups_and_leaves_the_rest_out():
    s = side(["angry", "sad", "disgust"], HIGH_AROUSAL, LOW_AROUSAL)
    assert s[0] == 1 and s[1] == 0 and np.isnan(s[2])


def test_affect_text_is_empty_without_the_heads_numbers():
    assert affect_text(None, None) == ""
    assert affect_text(0.424, -0.306) == "  arousal +0.42 valence -0.31"
