"""Corpora: the one way labelled clips come in. Every source yields items (path, label, speaker, corpus).

Sources (``scan(spec)``; ``spec`` is a path, or ``KIND=PATH`` to name the kind):
- a folder named by a corpus's convention: ``ravdess`` (``03-01-05-01-02-01-12``, speech and song),
  ``savee`` (``DC_a01``), ``crema-d`` (``1001_DFA_ANG_XX``), ``tess`` (``OAF_back_angry``), ``emodb``
  (``03a01Fa``), ``emovo`` (``dis-f1-b1``); found by trying each convention on the folder's audio files when the
  kind is not given;
- ``folders``: a folder per label (``angry/x.wav``), the speaker taken from each file name by ``speaker_pattern``
  (a regular expression with a group named ``speaker``; none: speakers unknown);
- ``manifest``: a CSV or TSV file with a header ``path,label,speaker`` and an optional ``corpus`` column; relative
  paths are taken from the manifest's folder. Every table emovae reads uses these names (``read_rows``; ``file`` is
  read as ``path``), so one manifest also lists predict's clips and their speakers (``predict --speaker-from``).
Labels are brought to one vocabulary (``canonical_label``: "anger", "ANG" -> "angry"); other labels are kept,
lower-cased, as the user's own classes. Bad rows and names (missing file, empty or unknown label, empty speaker) are
reported as ``Problem(where, reason)`` with the file and line, and skipped: never guessed.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .data import AUDIO_EXTENSIONS, EMOTIONS, parse_name
from .errors import DataError

#: The shared vocabulary: RAVDESS's eight emotions, then the ones other corpora add.
CANONICAL: tuple[str, ...] = EMOTIONS + ("boredom",)
ALIASES = {"anger": "angry", "ang": "angry", "mad": "angry", "fear": "fearful", "fea": "fearful", "afraid": "fearful",
           "scared": "fearful", "happiness": "happy", "hap": "happy", "joy": "happy", "sadness": "sad",
           "surprise": "surprised", "sur": "surprised", "ps": "surprised", "pleasant_surprise": "surprised",
           "pleasant surprise": "surprised", "disgusted": "disgust", "dis": "disgust", "neu": "neutral",
           "bored": "boredom"}
NO_SPEAKER = ""  # the speaker of a clip whose source gives none


@dataclass(frozen=True)
class Item:
    """One labelled clip. ``speaker`` is unique within its ``corpus`` ("" when unknown)."""

    path: str
    label: str
    speaker: str
    corpus: str

    @property
    def group(self) -> str:
        """The speaker across corpora, for folds: ``corpus/speaker``."""
        return f"{self.corpus}/{self.speaker}"


@dataclass(frozen=True)
class Problem:
    """A source row or file that was skipped: ``where`` (file, or file:line) and why."""

    where: str
    reason: str
    row: bool = False  # a manifest row (a user's table to fix), not a file found in a folder

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def canonical_label(text: str) -> str:
    """A label in the shared vocabulary when it names one of CANONICAL (or an alias), else lower-cased as given."""
    t = str(text).strip().lower()
    return ALIASES.get(t, t)


# ------------------------------------------------------------------------------------------- conventions
def _ravdess(stem: str, path: Path) -> tuple[str, str]:
    u = parse_name(path)
    return u.emotion, f"{u.actor:02d}"


_SAVEE = re.compile(r"^(DC|JE|JK|KL)_(sa|su|a|d|f|h|n)(\d{2})$")
_SAVEE_LABELS = {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy", "n": "neutral", "sa": "sad",
                 "su": "surprised"}


def _savee(stem: str, path: Path) -> tuple[str, str]:
    m = _SAVEE.match(stem)
    if not m:
        raise DataError("not a SAVEE name (SPK_<a|d|f|h|n|sa|su><nn>, speakers DC, JE, JK, KL)")
    return _SAVEE_LABELS[m.group(2)], m.group(1)


_CREMA = re.compile(r"^(\d{4})_([A-Z]{3})_(ANG|DIS|FEA|HAP|NEU|SAD)_(LO|MD|HI|XX|X)$")


def _crema(stem: str, path: Path) -> tuple[str, str]:
    m = _CREMA.match(stem)
    if not m:
        raise DataError("not a CREMA-D name (e.g. 1001_DFA_ANG_XX)")
    return canonical_label(m.group(3)), m.group(1)


_TESS = re.compile(r"^(OAF|YAF|OA|YA)_([A-Za-z]+)_(angry|disgust|fear|happy|neutral|ps|sad)$", re.IGNORECASE)


def _tess(stem: str, path: Path) -> tuple[str, str]:
    m = _TESS.match(stem)
    if not m:
        raise DataError("not a TESS name (OAF_<word>_<emotion> or YAF_<word>_<emotion>)")
    return canonical_label(m.group(3)), m.group(1).upper()[:2] + "F"  # OA_bite_neutral: misnamed in TESS itself


_EMODB = re.compile(r"^(\d{2})([abn]\d{2})([WLEAFTN])([a-z]?)$")
_EMODB_LABELS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fearful", "F": "happy", "T": "sad", "N": "neutral"}


def _emodb(stem: str, path: Path) -> tuple[str, str]:
    m = _EMODB.match(stem)
    if not m:
        raise DataError("not an EmoDB name (speaker, text, emotion letter W/L/E/A/F/T/N, version: 03a01Fa)")
    return _EMODB_LABELS[m.group(3)], m.group(1)


_EMOVO = re.compile(r"^(dis|gio|neu|pau|rab|sor|tri)-([fm]\d)-([a-z]\d)$")
_EMOVO_LABELS = {"dis": "disgust", "gio": "happy", "neu": "neutral", "pau": "fearful", "rab": "angry",
                 "sor": "surprised", "tri": "sad"}


def _emovo(stem: str, path: Path) -> tuple[str, str]:
    m = _EMOVO.match(stem)
    if not m:
        raise DataError("not an EMOVO name (<dis|gio|neu|pau|rab|sor|tri>-<speaker>-<sentence>: dis-f1-b1)")
    return _EMOVO_LABELS[m.group(1)], m.group(2)


NAMING = {"ravdess": _ravdess, "savee": _savee, "crema-d": _crema, "tess": _tess, "emodb": _emodb,
          "emovo": _emovo}
KINDS = (*NAMING, "folders", "manifest")


def audio_files(folder: Path) -> list[Path]:
    """Every .wav/.flac file under ``folder``, recursively (following linked folders, each folder once), sorted."""
    found, seen = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link loop, or a folder reached twice
            dirs[:] = []
            continue
        seen.add(real)
        found += [Path(root) / f for f in files if Path(f).suffix.lower() in AUDIO_EXTENSIONS]
    return sorted(p for p in found if p.is_file())


def _by_names(folder: Path, kind: str, files: list[Path]) -> tuple[list[Item], list[Problem]]:
    items, problems = [], []
    for p in files:
        try:
            label, speaker = NAMING[kind](p.stem, p)
        except DataError as exc:
            problems.append(Problem(str(p), str(exc).split(": ", 1)[-1] if kind == "ravdess" else str(exc)))
            continue
        items.append(Item(str(p), label, speaker, kind))
    return items, problems


def _by_folders(folder: Path, files: list[Path], speaker_pattern: str | None) -> tuple[list[Item], list[Problem]]:
    try:
        pattern = re.compile(speaker_pattern) if speaker_pattern else None
    except re.error as exc:
        raise DataError(f"speaker pattern {speaker_pattern!r} is not a valid regular expression ({exc})") from None
    if pattern is not None and "speaker" not in pattern.groupindex:
        raise DataError(f"speaker pattern {speaker_pattern!r} needs a group named speaker, e.g. "
                        r"'^(?P<speaker>[A-Z]+)_'")
    items, problems = [], []
    for p in files:
        if p.parent == folder:
            problems.append(Problem(str(p), "not in a label folder (expected LABEL/file.wav)"))
            continue
        speaker = NO_SPEAKER
        if pattern is not None:
            m = pattern.search(p.name)
            if not m or not m.group("speaker"):
                problems.append(Problem(str(p), f"the speaker pattern {speaker_pattern!r} finds no speaker"))
                continue
            speaker = m.group("speaker")
        items.append(Item(str(p), canonical_label(p.relative_to(folder).parts[0]), speaker, folder.name))
    return items, problems


#: The one table vocabulary, wherever emovae reads a CSV/TSV table (a training manifest, predict's inputs,
#: ``--speaker-from``): ``path`` (``file`` read as its alias: predict's own tables and older speaker tables name
#: it so), ``label``, ``speaker`` and optionally ``corpus``; other columns are ignored.
COLUMN_ALIASES = {"file": "path"}


def read_rows(path: Path, required: tuple[str, ...], purpose: str) -> tuple[list[str], list[tuple[int, dict]]]:
    """(columns, rows) of a CSV/TSV table in the one vocabulary: header names stripped and lower-cased, an alias
    (``COLUMN_ALIASES``) read as its column when the table does not also have that column; each row as (line
    number, {column: stripped value}) for the fields the row has (a short row has fewer), blank lines left out.
    Tab-separated when the suffix is .tsv or the header holds a tab. DataError naming the file (and line 1) when it
    cannot be read or lacks a ``required`` column; ``purpose`` says what the table is for, in that message."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable text table ({exc})") from None
    delimiter = "\t" if path.suffix.lower() == ".tsv" or ("\t" in text.split("\n", 1)[0]) else ","
    try:
        rows = list(csv.reader(text.splitlines(), delimiter=delimiter))
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV/TSV table ({exc})") from None
    header = [h.strip().lower() for h in (rows[0] if rows else [])]
    header = [COLUMN_ALIASES[h] if h in COLUMN_ALIASES and COLUMN_ALIASES[h] not in header else h for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}:1: {purpose} needs a header with columns {', '.join(required)} ('file' is read as "
                        f"'path'); missing {', '.join(missing)}" + (f" (found {', '.join(header)})" if any(header)
                                                                    else ""))
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if any(cell.strip() for cell in row):
            out.append((line, {c: v.strip() for c, v in zip(header, row)}))
    return header, out


def table_path(table: Path, value: str) -> Path:
    """A table's ``path`` value as a path: absolute as given, relative from the table's folder."""
    return Path(value) if Path(value).is_absolute() else table.parent / value


def read_manifest(path: Path) -> tuple[list[Item], list[Problem]]:
    """Items of a CSV/TSV manifest (``path,label,speaker[,corpus]``; ``read_rows``); DataError when its header is
    wrong."""
    try:
        header, rows = read_rows(path, ("path", "label", "speaker"), "a training manifest")
    except DataError as exc:
        raise DataError(str(exc).replace("not a readable text table", "not a readable text manifest")) from None
    items, problems = [], []
    for line, value in rows:
        where = f"{path}:{line}"
        if len(value) < len(header):
            problems.append(Problem(where, f"{len(value)} fields for {len(header)} columns", True))
            continue
        clip = table_path(path, value["path"])
        if not value["path"] or not clip.is_file():
            problems.append(Problem(where, f"file {value['path']!r} not found" + (
                f" (looked at {clip})" if value["path"] else ""), True))
        elif not value["label"]:
            problems.append(Problem(where, "empty label", True))
        elif not value["speaker"]:
            problems.append(Problem(where, "empty speaker (give every clip a speaker id: folds are split by speaker)",
                                    True))
        else:
            items.append(Item(str(clip), canonical_label(value["label"]), value["speaker"],
                              value.get("corpus") or path.stem))
    return items, problems


def speaker_in_name(path: str | os.PathLike) -> tuple[str, str] | None:
    """(convention, speaker) of a file named by one of the conventions of ``NAMING`` (tried in its order; they do
    not overlap), else None: for adapting clips to their speaker without a table (``predict --speaker-from
    name``)."""
    p = Path(path)
    for kind, parse in NAMING.items():
        try:  # the name, whatever the audio format (RAVDESS's parser also checks the suffix)
            return kind, parse(p.stem, p.with_suffix(".wav"))[1]
        except DataError:
            continue
    return None


def detect(folder: Path, files: list[Path]) -> str:
    """The naming convention most of ``files`` follow (their share must be at least half), else ``folders`` when
    the files sit in subfolders, else DataError."""
    best, best_n = None, 0
    sample = files[:200]
    for kind, parse in NAMING.items():
        n = 0
        for p in sample:
            try:
                parse(p.stem, p)
                n += 1
            except DataError:
                pass
        if n > best_n:
            best, best_n = kind, n
    if best is not None and best_n * 2 >= len(sample):
        return best
    if any(p.parent != folder for p in sample):
        return "folders"
    raise DataError(f"{folder}: the file names follow no known convention ({', '.join(NAMING)}) and there are no "
                    "label folders; name the kind (e.g. --data savee=DIR), use a folder per label, or a manifest "
                    "(CSV with path,label,speaker)")


def scan(spec: str | os.PathLike, speaker_pattern: str | None = None) -> tuple[list[Item], list[Problem]]:
    """Items and problems of one source; ``spec`` is ``PATH`` or ``KIND=PATH`` (KIND one of KINDS)."""
    text = str(spec)
    kind, _, rest = text.partition("=")
    if rest and kind.lower() in KINDS:
        kind, path = kind.lower(), Path(rest)
    else:
        kind, path = "auto", Path(text)
    if kind == "manifest" or (kind == "auto" and path.is_file()):
        if not path.is_file():
            raise DataError(f"{path}: no such manifest file")
        return read_manifest(path)
    if not path.is_dir():
        raise DataError(f"{path}: no such folder or manifest file")
    files = audio_files(path)
    if not files:
        raise DataError(f"{path}: no .wav or .flac files in it")
    kind = detect(path, files) if kind == "auto" else kind
    if kind == "folders":
        return _by_folders(path, files, speaker_pattern)
    return _by_names(path, kind, files)


def scan_all(specs, speaker_pattern: str | None = None) -> tuple[list[Item], list[Problem]]:
    """Items of several sources together (``--data`` repeated), each clip once; DataError when none is usable."""
    items, problems, seen = [], [], set()
    for spec in ([specs] if isinstance(specs, (str, os.PathLike)) else list(specs)):
        got, bad = scan(spec, speaker_pattern)
        problems += bad
        for it in got:
            key = os.path.realpath(it.path)  # one clip, however its path is spelled
            if key in seen:
                problems.append(Problem(it.path, "listed twice; kept once"))
                continue
            seen.add(key)
            items.append(it)
    if not items:
        raise DataError("no usable clips in " + ", ".join(map(str, [specs] if isinstance(specs, str) else specs))
                        + (f" ({len(problems)} skipped, e.g. {problems[0]})" if problems else ""))
    return items, problems


def select_labels(items: list[Item], labels=None, mapping: dict[str, str] | None = None
                  ) -> tuple[list[Item], Counter]:
    """Items with labels merged by ``mapping`` (e.g. {"calm": "neutral"}) and kept only when in ``labels`` (when
    given); returns them and the count of dropped clips per label."""
    mapping = {canonical_label(k): canonical_label(v) for k, v in (mapping or {}).items()}
    keep = None if labels is None else {canonical_label(x) for x in labels}
    out, dropped = [], Counter()
    for it in items:
        label = mapping.get(it.label, it.label)
        if keep is not None and label not in keep:
            dropped[label] += 1
            continue
        out.append(it if label == it.label else Item(it.path, label, it.speaker, it.corpus))
    return out, dropped


def class_order(labels) -> tuple[str, ...]:
    """The classes of a set of labels in a stable order: CANONICAL's order first, then the others sorted."""
    present = set(labels)
    return tuple(c for c in CANONICAL if c in present) + tuple(sorted(present - set(CANONICAL)))


def parse_mapping(text: str | None) -> dict[str, str]:
    """``calm=neutral,surprised=happy`` -> {"calm": "neutral", "surprised": "happy"}; DataError when malformed."""
    out = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        src, eq, dst = part.partition("=")
        if not eq or not src.strip() or not dst.strip():
            raise DataError(f"--map {text!r}: write FROM=TO pairs separated by commas, e.g. calm=neutral")
        out[src.strip()] = dst.strip()
    return out
