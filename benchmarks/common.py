"""The one shared helper of the product benchmarks: where the data is, the peer systems, the fold models that
benchmarks share, the machine a result was measured on, and the results file it goes to.

Scripts run from the repository root as ``python benchmarks/NAME.py`` and import this module as ``common`` (a
script's own folder is first on ``sys.path``). Everything from emovae is its public API.

Data. The corpora live in ``<repo>/../shared/data`` (``ravdess-speech``: the 20 development actors; ``savee``;
``librispeech-sample``); the environment variable ``EMOVAE_DATA`` names another root, and each script's
``--data`` another corpus folder. ``--quick`` (every benchmark) runs on ``QUICK_CLIPS`` clips of ``QUICK_ACTORS``
actors (links in a temporary folder), with short training, writing its results file to a temporary folder: a
smoke run in about a minute, never a result.

Peers. openSMILE functionals (eGeMAPSv02, ComParE_2016) and librosa MFCC statistics, each with the same RBF SVM.
Every peer decodes audio the way emovae does (``emovae.audio.load``: soundfile, downmix, soxr to 16 kHz).
Feature matrices are extracted in parallel over all cores and cached in ``~/.cache/emovae/peers`` keyed by
feature set and a hash of the sorted paths with their sizes and mtimes; the cache keeps the original extraction
wall time, so a cached run still reports the real cost. openSMILE is research-licensed: a benchmark-only
dependency (``pip install 'emovae[bench]'``).

Data are read through ``emovae.corpus`` (``scan``: items with label, speaker and corpus); folds are
speaker-grouped (``emovae.evaluate.speaker_folds`` over ``corpus/speaker`` groups: for RAVDESS the same folds as
the earlier ``actor_folds`` over actor numbers, "ravdess/01".."ravdess/20" sorting like 1..20).

Fold models. ``accuracy.py --save-models DIR`` saves the emovae row's model of each speaker-grouped fold;
``ood.py``, ``adaptation.py`` and ``robustness.py --models DIR`` load them instead of training the same models
again (a voice-student model takes about 5 minutes per fold on 2 cores). A saved model is used only for the fold
whose test speakers it was saved with (fold.json ``test_speakers``, e.g. "ravdess/01"; older files' int
``test_actors`` are read as RAVDESS actors), so no benchmark scores a model on speakers it was trained on.

Smoke test of the peers: ``python benchmarks/common.py [--quick] [--data DIR]`` prints the data folders and the
machine, and runs each installed peer through a speaker-grouped CV with the SVM.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
CORPORA = {"ravdess": "ravdess-speech", "savee": "savee", "librispeech": "librispeech-sample"}
QUICK_ACTORS, QUICK_CLIPS = 4, 40
SAMPLE_RATE = 16000


# --- data -----------------------------------------------------------------------------------------


def data_root() -> Path:
    """The folder holding the corpora: ``$EMOVAE_DATA``, else ``<repo>/../shared/data``."""
    return Path(os.environ.get("EMOVAE_DATA") or REPO.parent / "shared" / "data").expanduser()


def data_path(corpus: str = "ravdess") -> Path:
    """The folder of one corpus (``CORPORA``: ravdess, savee, librispeech)."""
    return data_root() / CORPORA[corpus]


def add_common_arguments(ap: argparse.ArgumentParser, corpus: str = "ravdess", quick: str = "") -> None:
    """``--data`` (the corpus folder) and ``--quick`` (``quick`` says what else it shortens)."""
    ap.add_argument("--data", default=str(data_path(corpus)),
                    help=f"the {corpus} folder (default: $EMOVAE_DATA or <repo>/../shared/data, /{CORPORA[corpus]})")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run on {QUICK_CLIPS} clips of {QUICK_ACTORS} actors{', ' + quick if quick else ''}; "
                         "writes its results file to a temporary folder; not a result")


def quick_items(spec: str | os.PathLike, n_speakers: int = QUICK_ACTORS, n_clips: int = QUICK_CLIPS) -> list:
    """``n_clips`` items (``emovae.corpus.Item``) of the first ``n_speakers`` speakers of ``spec`` (a folder or
    ``KIND=FOLDER``), each speaker's clips dealt round-robin over the labels, so every speaker has every label
    (RAVDESS: two neutral or calm clips when 10 clips each)."""
    from emovae.corpus import scan

    items = scan(spec)[0]
    speakers = sorted({it.speaker for it in items})[:n_speakers]
    per_speaker = n_clips // max(1, len(speakers))
    out = []
    for spk in speakers:
        by_label: dict[str, list] = {}
        for it in items:
            if it.speaker == spk:
                by_label.setdefault(it.label, []).append(it)
        picked, r = [], 0
        while len(picked) < per_speaker and any(len(v) > r for v in by_label.values()):
            picked += [v[r] for v in by_label.values() if len(v) > r][: per_speaker - len(picked)]
            r += 1
        out += picked
    return out


def quick_subset(folder: str | os.PathLike, into: str | os.PathLike, n_actors: int = QUICK_ACTORS,
                 n_clips: int = QUICK_CLIPS, kind: str | None = None) -> Path:
    """A folder of ``n_clips`` clips of the first ``n_actors`` speakers of ``folder`` (``quick_items``; links
    under ``into``, the files' names kept so the corpus is recognised as before). ``kind``: the corpus's naming
    convention (``emovae.corpus.NAMING``), else found from the names. RAVDESS clips go to ``quick-ravdess/Actor_NN``,
    others to ``quick-CORPUS/SPEAKER``."""
    items = quick_items(f"{kind}={folder}" if kind else folder, n_actors, n_clips)
    corpus = items[0].corpus if items else (kind or "ravdess")
    out = Path(into) / f"quick-{corpus}"
    for it in items:
        sub = f"Actor_{int(it.speaker):02d}" if it.corpus == "ravdess" else it.speaker
        link = out / sub / Path(it.path).name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(Path(it.path).resolve())
    return out


def quick_configs(seed: int = 0):
    """Model configs of a quick run: (VAEConfig, ClassifierConfig, TrainConfig) with a few epochs, one thread."""
    from emovae.config import ClassifierConfig, TrainConfig, VAEConfig

    return (VAEConfig(epochs=5, warmup_epochs=2), ClassifierConfig(voice_epochs=2),
            TrainConfig(seed=seed, threads=1))


# --- machine and results files ---------------------------------------------------------------------


def cores() -> int:
    """Usable CPU cores (the affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_commit(repo: Path = REPO) -> str:
    """The commit checked out in ``repo`` (short), with "+ local changes" when src/ or benchmarks/ differ from it."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "src", "benchmarks"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + local changes" if dirty else "")


def machine() -> dict:
    """What a result was measured on: date, host, platform, CPU, cores, Python, emovae commit."""
    return {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "node": platform.node(),
            "platform": platform.platform(), "cpu": cpu_model(), "cores": cores(),
            "python": platform.python_version(), "commit": git_commit()}


def rss_mb(pid: int | str = "self", field: str = "VmRSS") -> float:
    """Resident memory of a process in MB from /proc/PID/status: ``VmRSS`` (now) or ``VmHWM`` (its peak since it
    started); nan off Linux."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def command_line(script: str) -> str:
    """How this run was started: ``python benchmarks/SCRIPT.py ARGS``."""
    return f"python benchmarks/{script}" + ("" if len(sys.argv) == 1 else " " + shlex.join(sys.argv[1:]))


def header_lines(script: str, m: dict | None = None) -> list[str]:
    """The results block's first lines: date, machine, code and command, as markdown list items."""
    m = m or machine()
    return [f"- Date: {m['date']}",
            f"- Machine: {m['platform']}; CPU {m['cpu']}; {m['cores']} cores; Python {m['python']}",
            f"- Code: emovae at {m['commit']}",
            f"- Command: `{command_line(script)}`"]


def results_path(name: str, quick: bool = False) -> Path:
    """``benchmarks/results-NAME.md``; for a quick run a file in a temporary folder (never the measured one)."""
    if quick:
        return Path(tempfile.gettempdir()) / "emovae-quick" / f"results-{name}.md"
    return BENCH / f"results-{name}.md"


def write_results(path: str | os.PathLike, text: str) -> Path:
    """Write a results markdown file (folders made as needed); says where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")
    print(f"[benchmarks] wrote {path}", flush=True)
    return path


# --- fold models shared between benchmarks ----------------------------------------------------------


def fold_dir(root: Path, seed: int, fold: int) -> Path:
    return Path(root) / f"seed{seed}-fold{fold}"


def speaker_ids(speakers) -> list[str]:
    """Test speakers as sorted ``corpus/speaker`` strings (``FeatureTable.speakers``); a bare number (the
    ``test_actors`` of fold.json files written before the corpus layer, RAVDESS actor numbers) becomes
    ``ravdess/NN``."""
    out = set()
    for s in speakers:
        if isinstance(s, (int, np.integer)) or (isinstance(s, str) and s.isdigit()):
            out.add(f"ravdess/{int(s):02d}")
        else:
            out.add(str(s))
    return sorted(out)


def short_speakers(speakers) -> str:
    """Speakers for a table cell: ``ravdess/01, ravdess/05`` -> ``01, 05`` when they share one corpus."""
    ids = speaker_ids(speakers)
    if len({s.split("/", 1)[0] for s in ids}) == 1:
        ids = [s.split("/", 1)[-1] for s in ids]
    return ", ".join(ids)


def save_fold_model(model, root: Path, seed: int, fold: int, test_speakers, metrics: dict | None = None) -> Path:
    """``EmotionRecognizer.save`` into ``root/seed{seed}-fold{fold}`` with the fold's test speakers
    (``corpus/speaker`` strings) in fold.json."""
    d = fold_dir(root, seed, fold)
    model.save(d, metrics={k: v for k, v in (metrics or {}).items() if k not in ("test_actors", "test_speakers")})
    (d / "fold.json").write_text(json.dumps({"seed": seed, "fold": fold, "test_speakers": speaker_ids(test_speakers)}))
    return d


def saved_test_speakers(d: Path) -> list[str]:
    """The test speakers a fold model was held out of (fold.json: ``test_speakers``, or the older ``test_actors``
    as RAVDESS actor numbers)."""
    saved = json.loads((Path(d) / "fold.json").read_text())
    return speaker_ids(saved["test_speakers"] if "test_speakers" in saved else saved["test_actors"])


def fold_model_dir(root: Path, seed: int, fold: int, test_speakers) -> Path:
    """The saved model folder of that fold, after checking it was held out of exactly these test speakers."""
    d = fold_dir(root, seed, fold)
    if not (d / "fold.json").is_file():
        raise SystemExit(f"{d}: no saved fold model; run benchmarks/accuracy.py --save-models {root} --seeds {seed}")
    saved, wanted = saved_test_speakers(d), speaker_ids(test_speakers)
    if saved != wanted:
        raise SystemExit(f"{d}: saved for test speakers {saved}, this fold tests {wanted}; not reusable")
    return d


def load_fold_model(root: Path, seed: int, fold: int, test_speakers):
    """The saved ``EmotionRecognizer`` of that fold (``fold_model_dir`` checks its test speakers)."""
    from emovae.train.estimator import EmotionRecognizer

    return EmotionRecognizer.load(fold_model_dir(root, seed, fold, test_speakers))


# --- peers ------------------------------------------------------------------------------------------

OPENSMILE_SETS: tuple[str, ...] = ("eGeMAPSv02", "ComParE_2016")
DEFAULT_CACHE = Path("~/.cache/emovae/peers").expanduser()
CACHE_VERSION = 1  # bump when an extractor's output changes

_SMILE = None  # per-worker openSMILE instance (set by init_smile)


def have_opensmile() -> bool:
    try:
        import opensmile  # noqa: F401
    except ImportError:
        return False
    return True


def load_16k(path: str) -> np.ndarray:
    """Decode ``path`` the shared way -> mono float32 at 16 kHz, shape (samples,)."""
    from emovae.audio import load

    return load(path, SAMPLE_RATE)


def cache_key(name: str, paths: Sequence[str]) -> str:
    """Hash of the extractor name and the sorted paths with their sizes and mtimes."""
    h = hashlib.sha256(f"{name}|v{CACHE_VERSION}".encode())
    for p in sorted(paths):
        st = os.stat(p)
        h.update(f"\n{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def cached_extract(name: str, paths: Sequence[str], cache_dir: Path, worker: Callable[[str], np.ndarray],
                   initializer: Callable[..., None] | None = None, initargs: tuple = ()) -> tuple[np.ndarray, float]:
    """Run ``worker`` on every path in parallel (or read the cache) -> (X (n_files, n_features), seconds).

    Rows follow the order of ``paths``. ``seconds`` is the wall time of the original extraction, also when the
    matrix is served from the cache. NaN and inf are replaced by 0."""
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError(f"{name}: no files to extract")
    order = sorted(range(len(paths)), key=lambda i: paths[i])
    sorted_paths = [paths[i] for i in order]
    cache_dir = Path(cache_dir).expanduser()
    cache_file = cache_dir / f"{name}-{cache_key(name, paths)}.npz"

    if cache_file.exists():
        with np.load(cache_file, allow_pickle=False) as z:
            Xs, seconds = z["X"], float(z["seconds"])
        print(f"[peers] {name}: {Xs.shape[0]} files x {Xs.shape[1]} features from cache "
              f"(extraction took {seconds:.1f} s)", flush=True)
    else:
        workers = min(cores(), len(sorted_paths))
        chunk = max(1, len(sorted_paths) // (workers * 8))
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=workers, initializer=initializer, initargs=initargs) as ex:
            rows = list(ex.map(worker, sorted_paths, chunksize=chunk))
        seconds = time.perf_counter() - t0
        Xs = np.nan_to_num(np.vstack(rows).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, X=Xs, seconds=np.float64(seconds), paths=np.array(sorted_paths))
        os.replace(tmp, cache_file)
        print(f"[peers] {name}: extracted {Xs.shape[0]} files x {Xs.shape[1]} features in {seconds:.1f} s "
              f"wall on {workers} processes ({1000 * seconds / len(paths):.1f} ms/file wall, "
              f"~{1000 * seconds * workers / len(paths):.0f} ms/file per core)", flush=True)

    X = np.empty_like(Xs)
    X[order] = Xs
    return X, seconds


def init_smile(feature_set: str) -> None:
    """Worker initializer: build one openSMILE functionals extractor per process."""
    import opensmile

    global _SMILE
    _SMILE = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, feature_set),
                             feature_level=opensmile.FeatureLevel.Functionals)


def smile_signal(y: np.ndarray) -> np.ndarray:
    """openSMILE functionals of a 16 kHz signal with this process's extractor (``init_smile``) -> (n_features,)."""
    return _SMILE.process_signal(y, SAMPLE_RATE).to_numpy(dtype=np.float64).reshape(-1)


def smile_one(path: str) -> np.ndarray:
    """openSMILE functionals of one file -> (n_features,) float64."""
    df = _SMILE.process_signal(load_16k(path), SAMPLE_RATE)
    return df.to_numpy(dtype=np.float64).reshape(-1)


def opensmile_functionals(paths: Sequence[str], feature_set: str, cache_dir: Path = DEFAULT_CACHE
                          ) -> tuple[np.ndarray, float]:
    """openSMILE functionals per file -> (X (n_files, 88 for eGeMAPSv02 | 6373 for ComParE_2016), seconds)."""
    if feature_set not in OPENSMILE_SETS:
        raise ValueError(f"feature_set must be one of {OPENSMILE_SETS}, not {feature_set!r}")
    return cached_extract(feature_set, paths, cache_dir, smile_one, init_smile, (feature_set,))


def mfcc_one(path: str) -> np.ndarray:
    """``mfcc_vector`` of one file -> (82,) float64."""
    return mfcc_vector(load_16k(path))


def mfcc_vector(y: np.ndarray) -> np.ndarray:
    """40 MFCC mean, 40 MFCC std, spectral-centroid mean and std of a 16 kHz signal -> (82,) float64."""
    import librosa

    mfcc = librosa.feature.mfcc(y=y, sr=SAMPLE_RATE, n_mfcc=40)  # (40, frames)
    cent = librosa.feature.spectral_centroid(y=y, sr=SAMPLE_RATE)  # (1, frames)
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1), [cent.mean(), cent.std()]]).astype(np.float64)


def mfcc_stats(paths: Sequence[str], cache_dir: Path = DEFAULT_CACHE) -> tuple[np.ndarray, float]:
    """librosa MFCC statistics per file -> (X (n_files, 82), seconds)."""
    return cached_extract("mfcc_stats", paths, cache_dir, mfcc_one)


def peer_features(cache_dir: Path = DEFAULT_CACHE) -> dict[str, Callable[[Sequence[str]], tuple[np.ndarray, float]]]:
    """The peers by their table name: paths -> (X, extraction seconds)."""
    return {"eGeMAPSv02 + SVM": lambda p: opensmile_functionals(p, "eGeMAPSv02", cache_dir),
            "ComParE_2016 + SVM": lambda p: opensmile_functionals(p, "ComParE_2016", cache_dir),
            "MFCC-stats + SVM": lambda p: mfcc_stats(p, cache_dir)}


def svm():
    """The peers' classifier: StandardScaler + RBF SVC(C=10, gamma="scale")."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    # probability is left at its default (False): sklearn >= 1.9 warns when it is passed at all.
    return make_pipeline(StandardScaler(), SVC(kernel="rbf", C=10, gamma="scale", class_weight=None))


def svm_fold(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, None]:
    """``svm()`` fitted on X_train (n, d), y_train (n,) -> (predictions for X_test (m, d) (m,), None)."""
    return svm().fit(X_train, y_train).predict(X_test), None


def egemaps_svm_path(files: Sequence[str], labels: Sequence[str]) -> Callable[[str], np.ndarray]:
    """The peer as a per-clip path for latency benchmarks: file -> label from eGeMAPSv02 functionals and the SVM
    fitted on ``files`` with their ``labels`` (their functionals come from the cache)."""
    import opensmile

    from emovae import audio

    X, _ = opensmile_functionals(files, "eGeMAPSv02")
    model = svm().fit(X, list(labels))
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)

    def predict(path: str) -> np.ndarray:
        return model.predict(np.nan_to_num(smile.process_signal(audio.load(path, SAMPLE_RATE), SAMPLE_RATE)
                                           .to_numpy()))

    return predict


# --- smoke test --------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(ap)
    ap.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args(argv)

    from sklearn.metrics import balanced_accuracy_score

    from emovae.corpus import scan
    from emovae.evaluate import speaker_folds

    print("\n".join(header_lines("common.py")))
    for name in CORPORA:
        print(f"- data {name}: {data_path(name)} ({'present' if data_path(name).is_dir() else 'MISSING'})")
    with tempfile.TemporaryDirectory(prefix="emovae-peers-") as tmp:
        data, cache, folds = args.data, Path(args.cache_dir), args.folds
        if args.quick:
            data, cache, folds = quick_subset(args.data, tmp), Path(tmp) / "cache", min(folds, QUICK_ACTORS)
        items = scan(data)[0]
        paths = [it.path for it in items]
        y = np.array([it.label for it in items])
        groups = np.array([it.group for it in items])
        print(f"[peers] {len(paths)} files, {len(set(groups))} speakers, {cores()} cores")
        for name, extract in peer_features(cache).items():
            if name != "MFCC-stats + SVM" and not have_opensmile():
                print(f"{name:<20} skipped: opensmile is not installed (pip install 'emovae[bench]')")
                continue
            X, seconds = extract(paths)
            s = np.array([balanced_accuracy_score(y[te], svm_fold(X[tr], y[tr], X[te])[0])
                          for tr, te in speaker_folds(groups, folds, 0)])
            print(f"{name:<20} {X.shape[1]:>5} features, extraction {seconds:.1f} s; UA {s.mean():.3f} ± {s.std():.3f} "
                  f"({folds}-fold, speaker-grouped) [{' '.join(f'{v:.3f}' for v in s)}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
