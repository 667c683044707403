"""corpus: every source (a corpus's naming convention, a folder per label, a CSV/TSV manifest) yields items (path,
label, speaker, corpus); bad names and rows are reported with file (and line), never guessed."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from emovae.corpus import (ALIASES, NAMING, Item, Problem, audio_files, canonical_label, class_order, detect,
                           parse_mapping, read_manifest, read_rows, scan, scan_all, select_labels, speaker_in_name)
from emovae.data import EMOTIONS
from emovae.errors import DataError

SAVEE_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "savee"


def wav(path: Path, seconds: float = 0.05) -> Path:
    """A tiny silent WAV (the corpus layer reads names, not audio)."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * 16000), np.float32), 16000)
    return path


# name -> (label, speaker), and bad names, per convention
CONVENTIONS = {
    "ravdess": ({"Actor_12/03-01-05-02-01-02-12.wav": ("angry", "12"),  # speech
                 "Actor_12/03-02-04-01-01-01-12.wav": ("sad", "12"),  # song
                 "Actor_07/03-01-08-01-02-01-07.flac": ("surprised", "07"),
                 "Actor_07/03-02-02-02-02-02-07.wav": ("calm", "07")},
                ["Actor_07/03-01-09-01-01-01-07.wav", "Actor_07/angry_clip.wav"]),
    "savee": ({"DC_a01.wav": ("angry", "DC"), "JE_sa03.wav": ("sad", "JE"), "KL_su15.wav": ("surprised", "KL"),
               "JK_n30.wav": ("neutral", "JK"), "DC_d01.wav": ("disgust", "DC"), "DC_f02.wav": ("fearful", "DC"),
               "DC_h03.wav": ("happy", "DC")},
              ["XY_a01.wav", "DC_x01.wav"]),
    "crema-d": ({"1001_DFA_ANG_XX.wav": ("angry", "1001"), "1091_WSI_SAD_LO.wav": ("sad", "1091"),
                 "1002_IEO_HAP_HI.wav": ("happy", "1002"), "1003_TIE_FEA_MD.wav": ("fearful", "1003"),
                 "1004_MTI_DIS_XX.wav": ("disgust", "1004"), "1005_ITS_NEU_XX.wav": ("neutral", "1005")},
                ["1001_DFA_CAL_XX.wav", "101_DFA_ANG_XX.wav"]),
    "tess": ({"OAF_back_angry.wav": ("angry", "OAF"), "YAF_dog_ps.wav": ("surprised", "YAF"),
              "OAF_bath_fear.wav": ("fearful", "OAF"), "YAF_chair_Neutral.wav": ("neutral", "YAF"),
              "YAF_dog_disgust.wav": ("disgust", "YAF"), "OAF_back_happy.wav": ("happy", "OAF"),
              "OAF_back_sad.wav": ("sad", "OAF")},
             ["MAF_back_angry.wav", "OAF_back_calm.wav"]),
    "emodb": ({"03a01Fa.wav": ("happy", "03"), "16b10Wb.wav": ("angry", "16"), "08a02Lc.wav": ("boredom", "08"),
               "10a04Ea.wav": ("disgust", "10"), "11b03Ad.wav": ("fearful", "11"), "12a01Ta.wav": ("sad", "12"),
               "13a05Nc.wav": ("neutral", "13")},
              ["03a01Xa.wav", "3a01Fa.wav"]),
}


def write_corpus(root: Path, kind: str) -> tuple[dict, list[str]]:
    good, bad = CONVENTIONS[kind]
    for name in [*good, *bad]:
        wav(root / name)
    return good, bad


@pytest.mark.parametrize("kind", list(CONVENTIONS))
@pytest.mark.parametrize("named", [True, False], ids=["kind-given", "detected"])
def test_each_naming_convention_gives_labels_and_speakers(tmp_path, kind, named):
    root = tmp_path / "corpus"
    good, bad = write_corpus(root, kind)
    items, problems = scan(f"{kind}={root}" if named else root)
    got = {str(Path(it.path).relative_to(root)): (it.label, it.speaker) for it in items}
    assert got == good
    assert all(it.corpus == kind and it.group == f"{kind}/{it.speaker}" for it in items)
    assert [it.path for it in items] == sorted(it.path for it in items)  # in path order
    assert sorted(Path(pr.where).relative_to(root).as_posix() for pr in problems) == sorted(bad)
    assert all(pr.reason and not pr.row and str(pr).startswith(pr.where + ": ") for pr in problems)


def test_a_bad_name_says_why(tmp_path):
    wav(tmp_path / "c" / "Actor_01" / "03-01-09-01-01-01-01.wav")
    wav(tmp_path / "c" / "Actor_01" / "03-01-05-01-01-01-01.wav")
    _, problems = scan(f"ravdess={tmp_path / 'c'}")
    assert [pr.reason for pr in problems] == ["emotion 09 is not 01..08"]
    _, problems = scan(f"savee={tmp_path / 'c'}")  # the wrong kind given: every file reported, none guessed
    assert len(problems) == 2 and all("not a SAVEE name" in pr.reason for pr in problems)


def test_detection_and_its_limits(tmp_path):
    for kind in CONVENTIONS:
        good, bad = write_corpus(tmp_path / kind, kind)
        assert detect(tmp_path / kind, audio_files(tmp_path / kind)) == kind
    # unknown names at the top: no convention, no label folders -> an error that says what to do
    for name in ("a.wav", "b.wav", "c.flac"):
        wav(tmp_path / "loose" / name)
    (tmp_path / "loose" / "notes.txt").write_text("not audio")
    assert [p.name for p in audio_files(tmp_path / "loose")] == ["a.wav", "b.wav", "c.flac"]
    with pytest.raises(DataError, match="no known convention.*--data savee=DIR"):
        scan(tmp_path / "loose")
    # unknown names in subfolders: a folder per label
    wav(tmp_path / "byfolder" / "angry" / "x.wav")
    assert detect(tmp_path / "byfolder", audio_files(tmp_path / "byfolder")) == "folders"
    # the kind is case-blind; a path with '=' that names no kind is a path
    assert len(scan(f"SAVEE={tmp_path / 'savee'}")[0]) == len(CONVENTIONS["savee"][0])
    write_corpus(tmp_path / "a=b", "tess")
    assert {it.corpus for it in scan(tmp_path / "a=b")[0]} == {"tess"}
    with pytest.raises(DataError, match="no such folder"):
        scan(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .wav or .flac"):
        scan(tmp_path / "empty")


def _label_folders(root: Path) -> None:
    for rel in ["angry/AB_01.wav", "angry/CD_02.wav", "Sadness/AB_03.wav", "neutral/sub/CD_04.wav",
                "frustrated/AB_05.wav", "happy/nospeaker.wav", "loose.wav"]:
        wav(root / rel)


def test_folder_per_label_without_speakers(tmp_path):
    _label_folders(tmp_path / "mine")
    items, problems = scan(tmp_path / "mine")
    labels = {Path(it.path).name: it.label for it in items}
    assert labels == {"AB_01.wav": "angry", "CD_02.wav": "angry", "AB_03.wav": "sad", "CD_04.wav": "neutral",
                      "AB_05.wav": "frustrated", "nospeaker.wav": "happy"}  # canonical, or the user's own class
    assert all(it.speaker == "" and it.corpus == "mine" for it in items)
    assert [(Path(pr.where).name, pr.row) for pr in problems] == [("loose.wav", False)]
    assert "label folder" in problems[0].reason


def test_folder_per_label_with_a_speaker_pattern(tmp_path):
    _label_folders(tmp_path / "mine")
    items, problems = scan(f"folders={tmp_path / 'mine'}", speaker_pattern=r"^(?P<speaker>[A-Z]{2})_")
    assert sorted((Path(it.path).name, it.speaker) for it in items) == [
        ("AB_01.wav", "AB"), ("AB_03.wav", "AB"), ("AB_05.wav", "AB"), ("CD_02.wav", "CD"), ("CD_04.wav", "CD")]
    assert {it.group for it in items} == {"mine/AB", "mine/CD"}
    assert sorted(Path(pr.where).name for pr in problems) == ["loose.wav", "nospeaker.wav"]
    assert "finds no speaker" in next(pr.reason for pr in problems if pr.where.endswith("nospeaker.wav"))


def test_a_speaker_pattern_without_a_speaker_group_is_refused(tmp_path):
    _label_folders(tmp_path / "mine")
    with pytest.raises(DataError, match="group named speaker"):
        scan(tmp_path / "mine", speaker_pattern=r"^([A-Z]{2})_")


def test_an_invalid_speaker_pattern_is_a_data_error(tmp_path):
    _label_folders(tmp_path / "mine")
    with pytest.raises(DataError, match="speaker pattern"):
        scan(tmp_path / "mine", speaker_pattern=r"^(?P<speaker>[A-Z]{2}_")


# ------------------------------------------------------------------------------------------- manifests
def _clips(root: Path) -> list[Path]:
    return [wav(root / f"clip{i}.wav") for i in range(4)]


def test_csv_manifest_relative_paths_corpus_column_and_bad_rows(tmp_path):
    clips = _clips(tmp_path / "audio")
    m = tmp_path / "lists" / "train.csv"
    m.parent.mkdir()
    m.write_text("\n".join([
        "Path,Label,Speaker,Corpus",  # header case-blind
        "../audio/clip0.wav,Anger,s1,studio",  # 2: relative to the manifest's folder; an alias
        f"{clips[1]},frustrated,s2,",  # 3: absolute; the user's own label; no corpus -> the manifest's name
        "",  # 4: blank lines are skipped but counted
        "../audio/missing.wav,sad,s1,studio",  # 5
        "../audio/clip2.wav,,s1,studio",  # 6
        "../audio/clip3.wav,sad,,studio",  # 7
        "../audio/clip3.wav,sad",  # 8: short row
        "../audio/clip3.wav, SAD ,s3,studio",  # 9
    ]) + "\n")
    items, problems = read_manifest(m)
    assert [(Path(it.path).resolve(), it.label, it.speaker, it.corpus) for it in items] == [
        (clips[0].resolve(), "angry", "s1", "studio"), (clips[1].resolve(), "frustrated", "s2", "train"),
        (clips[3].resolve(), "sad", "s3", "studio")]
    assert all(Path(it.path).is_file() for it in items)
    assert [pr.where for pr in problems] == [f"{m}:5", f"{m}:6", f"{m}:7", f"{m}:8"]
    assert all(pr.row for pr in problems)
    reasons = [pr.reason for pr in problems]
    assert "not found" in reasons[0] and "missing.wav" in reasons[0]
    assert reasons[1] == "empty label" and reasons[2].startswith("empty speaker") and "fields" in reasons[3]
    assert scan(m) == (items, problems) == scan(f"manifest={m}")


def test_tsv_manifest(tmp_path):
    _clips(tmp_path)
    m = tmp_path / "set.tsv"
    m.write_text("label\tspeaker\tpath\nhap\tA\tclip0.wav\nneu\tB\tclip1.wav\nps\tA\tnope.wav\n")
    items, problems = scan(m)
    assert [(Path(it.path).name, it.label, it.speaker, it.corpus) for it in items] == [
        ("clip0.wav", "happy", "A", "set"), ("clip1.wav", "neutral", "B", "set")]
    assert [(pr.where, pr.row) for pr in problems] == [(f"{m}:4", True)]
    # a tab in the header is enough, whatever the suffix
    t = tmp_path / "set.txt"
    t.write_text(m.read_text())
    assert [it.label for it in read_manifest(t)[0]] == ["happy", "neutral"]


def test_a_bad_manifest_header_names_line_1(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("clip,emotion,speaker\nx.wav,angry,a\n")
    with pytest.raises(DataError) as exc:
        scan(m)
    assert f"{m}:1" in str(exc.value) and "missing path, label" in str(exc.value)
    assert "'file' is read as 'path'" in str(exc.value) and "found clip, emotion, speaker" in str(exc.value)
    with pytest.raises(DataError, match="no such manifest"):
        scan(f"manifest={tmp_path / 'none.csv'}")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81bad")
    with pytest.raises(DataError, match="not a readable text manifest"):
        scan(tmp_path / "bin.csv")


# ------------------------------------------------------------------------------------------- one table vocabulary
def test_a_manifest_may_name_its_path_column_file(tmp_path):
    """``file`` is read as ``path`` (predict's tables and older speaker tables name it so); a real ``path`` column
    wins over it."""
    _clips(tmp_path)
    m = tmp_path / "m.csv"
    m.write_text("File,label,speaker\nclip0.wav,angry,a\nclip1.wav,sad,b\n")
    assert [(Path(it.path).name, it.label, it.speaker) for it in read_manifest(m)[0]] == [
        ("clip0.wav", "angry", "a"), ("clip1.wav", "sad", "b")]
    both = tmp_path / "both.csv"
    both.write_text("file,path,label,speaker\nnope.wav,clip2.wav,angry,a\n")
    assert [Path(it.path).name for it in read_manifest(both)[0]] == ["clip2.wav"]


def test_read_rows_names_the_table_its_purpose_and_the_columns_it_lacks(tmp_path):
    t = tmp_path / "t.tsv"
    t.write_text("FILE\tSpeaker\tnote\n a.wav \t s1 \t x\n\n b.wav\n")
    header, rows = read_rows(t, ("path", "speaker"), "--speaker-from")
    assert header == ["path", "speaker", "note"]
    assert rows == [(2, {"path": "a.wav", "speaker": "s1", "note": "x"}), (4, {"path": "b.wav"})]
    with pytest.raises(DataError) as exc:
        read_rows(t, ("path", "label"), "a training manifest")
    assert str(exc.value).startswith(f"{t}:1: a training manifest needs a header with columns path, label")
    assert "missing label" in str(exc.value)
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81bad")
    with pytest.raises(DataError, match="not a readable text table"):
        read_rows(tmp_path / "bin.csv", ("path",), "x")


@pytest.mark.parametrize("kind", list(NAMING))
def test_speaker_in_name_knows_every_convention(kind):
    """Every convention's good names give the speaker ``scan`` gives, whatever the folder and the audio format."""
    names = CONVENTIONS[kind][0] if kind in CONVENTIONS else {"dis-f1-b1.wav": ("disgust", "f1"),
                                                              "gio-m3-n5.wav": ("happy", "m3")}
    for name, (_, speaker) in names.items():
        assert speaker_in_name(Path("/any/where") / name) == (kind, speaker)
        assert speaker_in_name(Path(name).with_suffix(".mp3")) == (kind, speaker)
    bad = CONVENTIONS[kind][1] if kind in CONVENTIONS else []
    assert all(speaker_in_name(b) is None or speaker_in_name(b)[0] != kind for b in bad)
    assert speaker_in_name("holiday recording.wav") is None


# ------------------------------------------------------------------------------------------- several sources
def test_data_mixing_two_sources_and_the_same_file_twice(tmp_path):
    ravdess, _ = write_corpus(tmp_path / "rav", "ravdess")
    clips = _clips(tmp_path / "own")
    m = tmp_path / "own" / "list.csv"
    first = next(iter(ravdess))
    m.write_text("path,label,speaker,corpus\nclip0.wav,angry,p1,calls\nclip1.wav,neutral,p2,calls\n"
                 f"{tmp_path / 'rav' / first},angry,12,ravdess\n")  # a clip the folder source also gives
    items, problems = scan_all([tmp_path / "rav", str(m), f"ravdess={tmp_path / 'rav'}"])
    assert len(items) == len(ravdess) + 2 and len({it.path for it in items}) == len(items)
    assert Counter(it.corpus for it in items) == {"ravdess": len(ravdess), "calls": 2}
    assert {it.group for it in items if it.corpus == "calls"} == {"calls/p1", "calls/p2"}
    twice = [pr for pr in problems if "listed twice" in pr.reason]
    assert len(twice) == 1 + len(ravdess) and not any(pr.row for pr in twice)  # the manifest's row, the folder again
    assert str(tmp_path / "rav" / first) in {pr.where for pr in twice}
    assert clips[2].exists()  # files no source names are not read
    assert scan_all(tmp_path / "rav")[0] == scan(tmp_path / "rav")[0]  # one source alone, as a path


def test_the_same_file_spelled_two_ways_is_kept_once(tmp_path):
    write_corpus(tmp_path / "rav", "ravdess")
    first = sorted(audio_files(tmp_path / "rav"))[0]
    (tmp_path / "lists").mkdir()
    m = tmp_path / "lists" / "m.csv"
    m.write_text(f"path,label,speaker,corpus\n../rav/{first.relative_to(tmp_path / 'rav')},sad,07,ravdess\n")
    items, problems = scan_all([tmp_path / "rav", m])
    assert len({Path(it.path).resolve() for it in items}) == len(items)


def test_no_usable_clips_is_an_error(tmp_path):
    wav(tmp_path / "c" / "XY_a01.wav")
    wav(tmp_path / "c" / "DC_a01.wav")
    m = tmp_path / "m.csv"
    m.write_text("path,label,speaker\nnope.wav,angry,a\n")
    with pytest.raises(DataError, match="no usable clips.*1 skipped"):
        scan_all([m])
    assert len(scan_all([tmp_path / "c", m])[1]) == 2  # one usable clip: the others reported


# ------------------------------------------------------------------------------------------- labels
def _items(*labels):
    return [Item(f"/x/{i}.wav", lab, "s", "c") for i, lab in enumerate(labels)]


def test_select_labels_keeps_maps_and_counts_dropped():
    items = _items("neutral", "calm", "calm", "happy", "sad", "angry", "surprised", "surprised", "frustrated")
    kept, dropped = select_labels(items, ["Anger", "joy", "neutral", "sad"], {"calm": "neutral"})
    assert [it.label for it in kept] == ["neutral", "neutral", "neutral", "happy", "sad", "angry"]
    assert [it.path for it in kept] == [items[i].path for i in range(6)]  # speaker, corpus and path kept
    assert dropped == Counter({"surprised": 2, "frustrated": 1})
    kept, dropped = select_labels(items, mapping={"Surprise": "HAPPY"})  # aliases on both sides; no --labels
    assert [it.label for it in kept].count("happy") == 3 and len(kept) == len(items) and not dropped
    assert select_labels(items) == (items, Counter())
    assert select_labels(items, ["boredom"]) == ([], Counter(it.label for it in items))


def test_canonical_labels_and_class_order():
    assert [canonical_label(x) for x in ("Anger", "ANG", " fear ", "ps", "Pleasant_Surprise", "bored", "Frustrated")] \
        == ["angry", "angry", "fearful", "surprised", "surprised", "boredom", "frustrated"]
    assert set(ALIASES.values()) <= set(EMOTIONS) | {"boredom"}
    assert class_order(["sad", "frustrated", "neutral", "boredom", "angry", "calm", "sad", "apathy"]) == (
        "neutral", "calm", "sad", "angry", "boredom", "apathy", "frustrated")  # shared order, then the others sorted
    assert class_order(EMOTIONS[::-1]) == EMOTIONS and class_order([]) == ()
    assert set(NAMING) == {"ravdess", "savee", "crema-d", "tess", "emodb", "emovo"}


def test_parse_mapping():
    assert parse_mapping("calm=neutral, surprised = happy,") == {"calm": "neutral", "surprised": "happy"}
    assert parse_mapping(None) == {} == parse_mapping("")
    for bad in ("calm", "=neutral", "calm=", "calm:neutral,sad=neutral"):
        with pytest.raises(DataError, match="FROM=TO"):
            parse_mapping(bad)


def test_problem_and_item_are_plain_records():
    it = Item("/a/b.wav", "angry", "DC", "savee")
    assert it.group == "savee/DC" and Item("/a/b.wav", "angry", "", "mine").group == "mine/"
    assert str(Problem("m.csv:3", "empty label", True)) == "m.csv:3: empty label"


@pytest.mark.realdata
def test_savee_on_the_real_data():
    if not SAVEE_DATA.is_dir():
        pytest.skip(f"SAVEE not found at {SAVEE_DATA} (it lives in ../shared beside the repo)")
    items, problems = scan(SAVEE_DATA)  # detected; its README.md is not audio
    assert not problems and len(items) == 480
    assert sorted({it.speaker for it in items}) == ["DC", "JE", "JK", "KL"] and {it.corpus for it in items} == {
        "savee"}
    counts = Counter(it.label for it in items)
    assert class_order(counts) == ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    assert counts["neutral"] == 120 and all(n == 60 for lab, n in counts.items() if lab != "neutral")
    assert all(n == 120 for n in Counter(it.speaker for it in items).values())
