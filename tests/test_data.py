import pytest

from emovae.corpus import scan
from emovae.data import EMOTIONS, parse_name
from emovae.errors import DataError


def test_label_order_is_ravdess_code_order():
    assert EMOTIONS == ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def test_parse_valid_name():
    u = parse_name("/x/Actor_12/03-01-05-02-01-02-12.flac")
    assert (u.emotion, u.intensity, u.statement, u.repetition, u.actor, u.gender) == (
        "angry", "strong", 1, 2, 12, "female")
    assert u.label == 4 and u.channel == "speech" and u.modality == 3
    assert parse_name("03-02-08-01-02-01-07.WAV").gender == "male"


@pytest.mark.parametrize("name,why", [
    ("03-01-09-01-01-01-01.wav", "emotion 09"),
    ("03-01-00-01-01-01-01.wav", "emotion 00"),
    ("03-01-01-02-01-01-01.wav", "neutral (01) has no strong"),
    ("03-01-05-03-01-01-01.wav", "intensity 03"),
    ("03-01-05-01-03-01-01.wav", "statement 03"),
    ("03-01-05-01-01-03-01.wav", "repetition 03"),
    ("03-01-05-01-01-01-25.wav", "actor 25"),
    ("03-01-05-01-01-01-00.wav", "actor 00"),
    ("02-01-05-01-01-01-01.wav", "video-only"),
    ("03-03-05-01-01-01-01.wav", "vocal channel 03"),
    ("03-01-05-01-01-01.wav", "not a RAVDESS name"),
    ("03-01-5-01-01-01-01.wav", "not a RAVDESS name"),
    ("angry_clip.wav", "not a RAVDESS name"),
    ("03-01-05-01-01-01-01.mp4", "extension"),
])
def test_parse_rejects_with_reason(name, why):
    with pytest.raises(DataError) as exc:
        parse_name(name)
    assert why in str(exc.value) and name in str(exc.value)


def test_scan_recurses_sorts_and_reports_bad_names(tmp_path):
    """A RAVDESS folder read through corpus.scan: found recursively, in path order, bad names reported, never
    guessed; other files ignored."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ["a/b/03-01-02-01-01-01-02.wav", "a/03-01-01-01-01-01-01.flac", "bad-name.wav",
                "03-01-09-01-01-01-01.wav", "notes.txt"]:
        (tmp_path / rel).write_bytes(b"")
    items, problems = scan(f"ravdess={tmp_path}")
    assert [(it.label, it.speaker) for it in items] == [("neutral", "01"), ("calm", "02")]
    assert sorted(pr.where.split("/")[-1] for pr in problems) == ["03-01-09-01-01-01-01.wav", "bad-name.wav"]
    assert not any(pr.row for pr in problems)


def test_scan_missing_folder(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        scan(tmp_path / "nope")
