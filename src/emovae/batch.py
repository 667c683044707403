"""Batch scoring: many files in, one table out (``emovae predict ... --out results.csv``,
``Recognizer.predict_files``).

Inputs (``expand_inputs``): files, folders (recursively, ``AUDIO_SUFFIXES``), glob patterns, CSV/TSV manifests
with a ``path`` (or ``file``) column (relative paths from the manifest's folder) and ``-`` for a list of paths on
stdin; each file once, in the order given. Rows (``score``): one per file with ``columns(classes)``; a file that
cannot be scored becomes a row with its error, never a stop; features are computed on worker processes
(``predictions``, ``jobs``: all cores by default from the CLI and ``predict_files``) and the network runs on
``CHUNK`` clips at a time in the calling process. Tables (``write_table``): CSV and JSON lines with the
standard library, Parquet with pandas and pyarrow (``pip install 'emovae[batch]'``). Resumable: with an existing
table, files already scored (rows without an error) are skipped and the new rows appended, so no file is scored
twice; rows are written as they are scored (Parquet: rewritten every ``PARQUET_FLUSH_ROWS`` rows), so a killed run
loses at most the rows in flight.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .affect import DIMENSIONS
from .errors import EmovaeError, ParameterError, require

__all__ = ["AUDIO_SUFFIXES", "columns", "expand_inputs", "file_features", "predictions", "score", "predict_files",
           "read_done", "write_table", "run_to_table"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
MANIFEST_SUFFIXES = (".csv", ".tsv")
TABLE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
FIXED_BEFORE = ("file", "answer", "emotion", "confidence")
#: arousal and valence (``affect.DIMENSIONS``) are empty for a model without those heads and for a clip that is not
#: speech (``runtime.Prediction``)
FIXED_AFTER = (*DIMENSIONS, "in_domain", "novelty", "duration_s", "error")
CHUNK = 16  # clips whose network forward runs as one batch
PARQUET_FLUSH_ROWS = 500


# ------------------------------------------------------------------------------------------------- inputs
def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _manifest_paths(path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Paths of a CSV/TSV manifest's ``path`` column (``file`` read as its alias; relative paths from the manifest's
    folder: ``corpus.read_rows``, the one table vocabulary, so a training manifest or a table predict wrote can be
    scored), and problems (where, message) for rows without a path. Other columns (label, speaker...) are
    ignored here."""
    from .corpus import read_rows, table_path

    _, rows = read_rows(path, ("path",), "a manifest for predict")
    paths, problems = [], []
    for line, value in rows:
        if not value.get("path"):
            problems.append((f"{path}:{line}", "empty path"))
            continue
        paths.append(str(table_path(path, value["path"])))
    return paths, problems


def _audio_in(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def expand_inputs(specs: Iterable[str], stdin=None) -> tuple[list[str], list[tuple[str, str]]]:
    """(files, problems): the audio files named by ``specs`` (files, folders, globs, manifests, ``-`` for paths
    on ``stdin``, one a line), each once in the order given; problems (spec, message) for a glob that matches
    nothing, a folder without audio or a manifest row without a path. A named file that does not exist is kept:
    scoring it gives its error."""
    files: dict[str, None] = {}
    problems: list[tuple[str, str]] = []
    read_stdin = False

    def add(paths):
        for p in paths:
            files.setdefault(os.path.normpath(p), None)

    for spec in specs:
        spec = str(spec)
        if spec == "-":
            if read_stdin:
                continue
            read_stdin = True
            lines = (stdin if stdin is not None else sys.stdin).read().splitlines()
            add(line.strip() for line in lines if line.strip())
            continue
        p = Path(spec)
        if p.is_dir():
            found = _audio_in(p)
            if not found:
                problems.append((spec, f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder"))
            add(found)
        elif p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            paths, probs = _manifest_paths(p)
            add(paths)
            problems.extend(probs)
        elif not p.exists() and _is_glob(spec):
            found = sorted(m for m in glob.glob(spec, recursive=True))
            hits = []
            for m in found:
                if Path(m).is_dir():
                    hits.extend(_audio_in(Path(m)))
                elif Path(m).suffix.lower() in AUDIO_SUFFIXES:
                    hits.append(m)
            if not hits:
                problems.append((spec, "no audio file matches this pattern"))
            add(hits)
        else:
            add([spec])
    return list(files), problems


# --------------------------------------------------------------------------------------------------- rows
def columns(classes, speaker: bool = False) -> list[str]:
    """The table's columns: file, answer, emotion, confidence, one per class, arousal, valence, in_domain, novelty,
    duration_s, error; with ``speaker`` (scores adapted to each speaker: ``predict --speaker-from``), a speaker
    column after file."""
    clash = set(classes) & set(FIXED_BEFORE + FIXED_AFTER + (("speaker",) if speaker else ()))
    if clash:
        raise ParameterError(f"class names {sorted(clash)} clash with the table's own columns")
    return [FIXED_BEFORE[0], *(["speaker"] if speaker else []), *FIXED_BEFORE[1:], *classes, *FIXED_AFTER]


def error_row(file: str, message: str, classes, speaker: str | None = None) -> dict:
    """The row of a file that could not be scored: its error; its speaker when known (adapted tables)."""
    row = dict.fromkeys(columns(classes, speaker is not None))
    row["file"], row["error"] = file, message
    if speaker is not None:
        row["speaker"] = speaker
    return row


def prediction_row(p, classes, speaker: str | None = None) -> dict:
    """The row of a ``runtime.Prediction``; ``speaker``: the speaker it was adapted to (``--speaker-from``)."""
    row = {"file": p.file, **({} if speaker is None else {"speaker": speaker}), "answer": p.answer,
           "emotion": p.emotion, "confidence": round(p.confidence, 6)}
    row.update({c: round(p.probabilities[c], 6) for c in classes})
    row.update({k: None if getattr(p, k) is None else round(getattr(p, k), 6) for k in DIMENSIONS})
    row.update(in_domain=p.in_domain, novelty=None if p.novelty is None else round(p.novelty, 3),
               duration_s=round(p.duration_s, 3), error=None)
    return row


def _message(path: str, exc: Exception) -> str:
    text = str(exc) if isinstance(exc, EmovaeError) else f"{type(exc).__name__}: {exc}"
    return text if str(path) in text else f"{path}: {text}"


def _file_features(task) -> tuple[list | None, str | None]:
    """(the network's input features of a file and its test-time copies, None) or (None, the error message): one
    task of ``file_features``, in a worker process or this one. ``task``: (path, ``runtime.FeatureJob``)."""
    path, job = task
    try:
        return job.file(path), None
    except Exception as exc:  # noqa: BLE001 - a bad file is a row, never a stop
        return None, _message(path, exc)


def one_blas_thread() -> None:
    """A worker's BLAS on one thread (the CLI sets it before numpy loads; a library caller may not): clips are
    small matrices, and more threads than cores only contend."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # not a dependency of the core: the environment's setting stands
        return
    threadpool_limits(1)


def file_features(job, paths: list[str], jobs: int | None = 1) -> Iterator[tuple[list | None, str | None]]:
    """``_file_features`` of each path, in order: in this process (``jobs`` 1, fewer than 4 files, or this process
    is itself a daemonic worker, which may not start processes), else on ``jobs`` worker processes (None: all
    cores) as ``extraction.extract_files`` runs them: a ProcessPoolExecutor, tasks in chunks, one BLAS thread and
    one onnxruntime thread (the voice student's) per worker. EmovaeError when a worker dies."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    jobs = jobs or os.cpu_count() or 1
    tasks = [(p, job) for p in paths]
    if jobs == 1 or len(tasks) < 4 or multiprocessing.current_process().daemon:
        yield from map(_file_features, tasks)
        return
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), initializer=one_blas_thread) as pool:
        try:
            yield from pool.map(_file_features, tasks, chunksize=max(1, min(16, len(tasks) // (4 * jobs))))
        except BrokenProcessPool:
            raise EmovaeError("a worker process computing features died (out of memory, or a crash in a decoder); "
                              "the rows written so far are kept: run the same command again to resume, with --jobs 1 "
                              "to find the file, or on Dask (--workers N), which reschedules a dead worker's files"
                              ) from None


def predictions(recognizer, paths: Iterable[str], chunk: int = CHUNK, jobs: int | None = 1) -> Iterator[tuple]:
    """(path, ``runtime.Prediction``, None) or (path, None, error message) per path, in order. Features come from
    ``file_features`` (``jobs`` worker processes; 1: this process), the network runs on ``chunk`` clips at a time
    in this process: the same batches whatever ``jobs``, so the same numbers. Never raises for a bad file
    (KeyboardInterrupt aside)."""
    paths = [str(p) for p in paths]
    feats = file_features(recognizer.feature_job, paths, jobs)
    for start in range(0, len(paths), chunk):
        part = paths[start:start + chunk]
        out: list[tuple] = [(p, None, None) for p in part]
        ok, clips, copies = [], [], []
        for i, (path, (X, err)) in enumerate(zip(part, feats)):
            if err is not None:
                out[i] = (path, None, err)
                continue
            ok.append(i)
            clips.append(X[0])
            copies.append(X[1:])
        if ok:
            try:
                preds = recognizer.predict_features(clips, [part[i] for i in ok],
                                                    copies=copies if any(copies) else None)
            except Exception:  # noqa: BLE001 - find the clip the network refuses: one at a time
                preds = []
                for i, clip, more in zip(ok, clips, copies):
                    try:
                        preds.append(recognizer.predict_features([clip], [part[i]], copies=[more] if more else None)[0])
                    except Exception as exc:  # noqa: BLE001
                        preds.append(exc)
            for i, p in zip(ok, preds):
                out[i] = (part[i], None, _message(part[i], p)) if isinstance(p, Exception) else (part[i], p, None)
        yield from out


def score(recognizer, paths: Iterable[str], chunk: int = CHUNK, jobs: int | None = 1) -> Iterator[dict]:
    """One row per path, in order (``prediction_row`` or ``error_row``) from ``predictions`` (features on ``jobs``
    worker processes, the network on ``chunk`` clips at a time). Never raises for a bad file (KeyboardInterrupt
    aside)."""
    classes = recognizer.classes
    for path, p, err in predictions(recognizer, paths, chunk, jobs):
        yield prediction_row(p, classes) if err is None else error_row(path, err, classes)


def predict_files(recognizer, paths: Iterable[str | os.PathLike], jobs: int | None = None):
    """A pandas DataFrame indexed by file, one row per path (``columns`` less ``file``); unreadable files get
    their ``error`` and empty scores. Features on ``jobs`` worker processes (default: all cores; 1: this process).
    Needs pandas (``pip install 'emovae[batch]'``)."""
    pd = require("pandas", "batch")
    paths = [str(p) for p in paths]
    table = pd.DataFrame(list(score(recognizer, paths, jobs=jobs)), columns=columns(recognizer.classes))
    return table.set_index("file")


# ------------------------------------------------------------------------------------------------- tables
def table_format(path: str | os.PathLike) -> str:
    fmt = TABLE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ParameterError(f"{path}: --out must end in {', '.join(TABLE_FORMATS)}")
    return fmt


def _key(file: str) -> str:
    return os.path.normpath(os.path.abspath(str(file)))


def _blank(value) -> bool:
    if value is None or value == "":
        return True
    try:
        return value != value  # NaN from pandas
    except Exception:  # noqa: BLE001
        return False


def read_table(path: str | os.PathLike) -> tuple[list[str], list[dict]]:
    """(columns, rows) of a table written by ``write_table``; CSV values stay text."""
    fmt = table_format(path)
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            return list(reader.fieldnames or []), list(reader)
    if fmt == "jsonl":
        rows = []
        with open(path, encoding="utf-8") as fh:
            lines = [line for line in fh.read().split("\n") if line.strip()]
        for n, line in enumerate(lines, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if n == len(lines):  # the last line, cut by a kill: its file is scored again
                    break
                raise ParameterError(f"{path}:{n}: not a JSON line") from None
        return (list(rows[0]) if rows else []), rows
    pd = require("pandas", "batch")
    require("pyarrow", "batch")
    df = pd.read_parquet(path)
    return list(df.columns), df.astype(object).where(df.notna(), None).to_dict("records")


def _scored(row: dict, fmt: str) -> bool:
    """A complete row without an error. A CSV row cut by a kill lacks its last fields (None, where a complete
    row has "" for no error); a cut JSON line is not read at all."""
    if _blank(row.get("emotion")):
        return False
    return row.get("error") == "" if fmt == "csv" else _blank(row.get("error"))


def read_done(path: str | os.PathLike) -> set[str]:
    """Files (absolute, normalised) that a table holds scored rows of (rows without an error)."""
    return {_key(r["file"]) for r in read_table(path)[1] if _scored(r, table_format(path))}


class TableWriter:
    """Rows written to a CSV, JSON-lines or Parquet table as they come; ``keep``: rows of an earlier run kept
    first."""

    def __init__(self, path: str | os.PathLike, cols: list[str], keep: list[dict] | None = None):
        self.path, self.cols, self.fmt = Path(path), cols, table_format(path)
        self.rows: list[dict] = list(keep or [])
        if self.fmt == "parquet":
            self.pd = require("pandas", "batch")
            require("pyarrow", "batch")
            self.pending = 0
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            self._write(fh, self.rows, header=True)
        os.replace(tmp, self.path)
        self.rows = []
        self.fh = open(self.path, "a", newline="", encoding="utf-8")

    def _write(self, fh, rows, header=False):
        if self.fmt == "csv":
            w = csv.DictWriter(fh, self.cols, extrasaction="ignore")
            if header:
                w.writeheader()
            w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
        else:
            for r in rows:
                fh.write(json.dumps({c: r.get(c) for c in self.cols}) + "\n")

    def write(self, rows: list[dict]) -> None:
        if self.fmt == "parquet":
            self.rows.extend(rows)
            self.pending += len(rows)
            if self.pending >= PARQUET_FLUSH_ROWS:
                self.flush()
            return
        self._write(self.fh, rows)
        self.fh.flush()

    def flush(self) -> None:
        if self.fmt == "parquet":
            df = self.pd.DataFrame(self.rows, columns=self.cols)
            for c in self.cols:
                if c not in ("file", "speaker", "answer", "emotion", "error", "in_domain"):
                    df[c] = self.pd.to_numeric(df[c], errors="coerce")
            df["in_domain"] = df["in_domain"].astype("boolean")
            tmp = self.path.with_name(self.path.name + ".tmp")
            df.to_parquet(tmp, index=False)
            os.replace(tmp, self.path)
            self.pending = 0
        else:
            self.fh.flush()

    def close(self) -> None:
        self.flush()
        if self.fmt != "parquet":
            self.fh.close()


def write_table(rows: Iterable[dict], path: str | os.PathLike, classes) -> None:
    """Write ``rows`` to a new table at ``path`` (.csv, .jsonl or .parquet)."""
    w = TableWriter(path, columns(classes))
    try:
        w.write(list(rows))
    finally:
        w.close()


def run_to_table(recognizer, files: list[str], problems: list[tuple[str, str]], out: str | os.PathLike,
                 progress: bool = False, rows: Iterable[dict] | None = None,
                 scorer: Callable[[list[str]], Iterable[dict]] | None = None, speaker: bool = False,
                 jobs: int | None = 1) -> dict:
    """Score ``files`` into the table ``out``, resuming an existing one: its scored files are skipped, its error
    rows for files scored now replaced. ``problems`` become error rows. ``rows``: rows computed elsewhere (then
    no resume: ``out`` must be new). ``scorer``: the files still to score -> their rows in the same order
    (default ``score`` with ``recognizer`` here, features on ``jobs`` worker processes; ``cluster.Engine`` gives one
    on Dask). ``speaker``: the
    table has a speaker column (``rows`` adapted to each speaker). Returns counts: scored, failed, skipped."""
    cols = columns(recognizer.classes, speaker)
    out = Path(out)
    table_format(out)
    keep, done = [], set()
    if out.exists():
        if rows is not None:
            raise ParameterError(f"{out} exists; adapted scores depend on all clips of a speaker, so they are not "
                                 "resumed: write to a new --out")
        old_cols, old_rows = read_table(out)
        if old_rows and old_cols != cols:
            raise ParameterError(f"{out}: its columns ({', '.join(old_cols)}) are not this model's "
                                 f"({', '.join(cols)}): write to a new --out")
        fmt = table_format(out)
        done = {_key(r["file"]) for r in old_rows if _scored(r, fmt)}
        now = {_key(f) for f in files} | {_key(s) for s, _ in problems}
        keep = [r for r in old_rows if _scored(r, fmt) or _key(r["file"]) not in now]
    todo = [f for f in files if _key(f) not in done]
    counts = {"scored": 0, "failed": 0, "skipped": len(files) - len(todo)}
    writer = TableWriter(out, cols, keep)
    try:
        if problems:
            writer.write([error_row(s, m, recognizer.classes) for s, m in problems])
            counts["failed"] += len(problems)
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="file", file=sys.stderr, disable=not progress, dynamic_ncols=True)
        if rows is not None:
            source = iter(rows)
        else:
            source = iter(scorer(todo) if scorer is not None else score(recognizer, todo, jobs=jobs))
        buf = []
        for row in source:
            buf.append(row)
            counts["failed" if row["error"] else "scored"] += 1
            bar.update(1)
            if len(buf) >= CHUNK:
                writer.write(buf)
                buf = []
        writer.write(buf)
        bar.close()
    finally:
        writer.close()
    return counts
