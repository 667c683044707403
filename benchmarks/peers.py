"""Peer baselines for the accuracy benchmark: openSMILE functionals, MFCC statistics, and an RBF SVM.

Every peer decodes audio the same way emovae does (``emovae.audio.load``: soundfile, downmix to mono,
soxr resample to 16 kHz). Feature matrices are extracted in parallel over all cores and cached in
``~/.cache/emovae/peers`` keyed by feature set and a hash of the sorted paths with their sizes and
mtimes; the cache also keeps the original extraction wall time so a cached run still reports the real
cost. openSMILE is research-licensed, so it is a benchmark-only dependency (``pip install opensmile``).

Smoke test: python benchmarks/peers.py [--data ../shared/data/ravdess-speech]
runs all three extractors and a 5-fold actor-grouped CV of each with the SVM.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
OPENSMILE_SETS: tuple[str, ...] = ("eGeMAPSv02", "ComParE_2016")
DEFAULT_CACHE = Path("~/.cache/emovae/peers").expanduser()
_CACHE_VERSION = 1  # bump when an extractor's output changes

_SMILE = None  # per-worker openSMILE instance (set by _init_smile)


def _n_workers() -> int:
    """Usable CPU cores (respects the affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _load(path: str) -> np.ndarray:
    """Decode ``path`` the shared way -> mono float32 at 16 kHz, shape (samples,)."""
    from emovae.audio import load

    return load(path, SAMPLE_RATE)


def _cache_key(name: str, paths: Sequence[str]) -> str:
    """Hash of the extractor name and the sorted paths with their sizes and mtimes."""
    h = hashlib.sha256(f"{name}|v{_CACHE_VERSION}".encode())
    for p in sorted(paths):
        st = os.stat(p)
        h.update(f"\n{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _cached_extract(
    name: str,
    paths: Sequence[str],
    cache_dir: Path,
    worker: Callable[[str], np.ndarray],
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> tuple[np.ndarray, float]:
    """Run ``worker`` on every path in parallel (or read the cache) -> (X (n_files, n_features), seconds).

    Rows follow the order of ``paths``. ``seconds`` is the wall time of the original extraction, also
    when the matrix is served from the cache. NaN and inf are replaced by 0.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError(f"{name}: no files to extract")
    order = sorted(range(len(paths)), key=lambda i: paths[i])
    sorted_paths = [paths[i] for i in order]
    cache_dir = Path(cache_dir).expanduser()
    cache_file = cache_dir / f"{name}-{_cache_key(name, paths)}.npz"

    if cache_file.exists():
        with np.load(cache_file, allow_pickle=False) as z:
            Xs, seconds = z["X"], float(z["seconds"])
        print(f"[peers] {name}: {Xs.shape[0]} files x {Xs.shape[1]} features from cache "
              f"(extraction took {seconds:.1f} s)", flush=True)
    else:
        workers = min(_n_workers(), len(sorted_paths))
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


# --- openSMILE ------------------------------------------------------------------------------------


def _init_smile(feature_set: str) -> None:
    """Worker initializer: build one openSMILE functionals extractor per process."""
    import opensmile

    global _SMILE
    _SMILE = opensmile.Smile(
        feature_set=getattr(opensmile.FeatureSet, feature_set),
        feature_level=opensmile.FeatureLevel.Functionals,
    )


def _smile_one(path: str) -> np.ndarray:
    """openSMILE functionals of one file -> (n_features,) float64."""
    df = _SMILE.process_signal(_load(path), SAMPLE_RATE)
    return df.to_numpy(dtype=np.float64).reshape(-1)


def opensmile_functionals(
    paths: Sequence[str], feature_set: str, cache_dir: Path = DEFAULT_CACHE
) -> tuple[np.ndarray, float]:
    """openSMILE functionals per file -> (X (n_files, 88 for eGeMAPSv02 | 6373 for ComParE_2016), seconds)."""
    if feature_set not in OPENSMILE_SETS:
        raise ValueError(f"feature_set must be one of {OPENSMILE_SETS}, not {feature_set!r}")
    return _cached_extract(feature_set, paths, cache_dir, _smile_one, _init_smile, (feature_set,))


# --- MFCC statistics (the classic repo baseline) --------------------------------------------------


def egemaps_svm_path(files: Sequence[str]) -> Callable[[str], np.ndarray]:
    """The peer as a per-clip path for latency benchmarks: file -> label from eGeMAPSv02 functionals and an RBF
    SVM (C = 10) fitted on ``files`` (their functionals come from the cache)."""
    import opensmile
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from emovae import audio
    from emovae.data import parse_name

    X, _ = opensmile_functionals(files, "eGeMAPSv02")
    svm = make_pipeline(StandardScaler(), SVC(C=10)).fit(X, [parse_name(f).label for f in files])
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)

    def predict(path: str) -> np.ndarray:
        return svm.predict(np.nan_to_num(smile.process_signal(audio.load(path, 16000), 16000).to_numpy()))

    return predict


def _mfcc_one(path: str) -> np.ndarray:
    """40 MFCC mean, 40 MFCC std, spectral-centroid mean and std of one file -> (82,) float64."""
    import librosa

    y = _load(path)
    mfcc = librosa.feature.mfcc(y=y, sr=SAMPLE_RATE, n_mfcc=40)  # (40, frames)
    cent = librosa.feature.spectral_centroid(y=y, sr=SAMPLE_RATE)  # (1, frames)
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1), [cent.mean(), cent.std()]]).astype(np.float64)


def mfcc_stats(paths: Sequence[str], cache_dir: Path = DEFAULT_CACHE) -> tuple[np.ndarray, float]:
    """librosa MFCC statistics per file -> (X (n_files, 82), seconds)."""
    return _cached_extract("mfcc_stats", paths, cache_dir, _mfcc_one)


# --- classifier -----------------------------------------------------------------------------------


def svm_fold(
    X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """StandardScaler + RBF SVC(C=10, gamma="scale"): X_train (n, d), y_train (n,), X_test (m, d) -> (pred (m,), None)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    # probability is left at its default (False): sklearn >= 1.9 warns when it is passed at all.
    model = make_pipeline(StandardScaler(), SVC(kernel="rbf", C=10, gamma="scale", class_weight=None))
    model.fit(X_train, y_train)
    return model.predict(X_test), None


# --- smoke mode -----------------------------------------------------------------------------------


def _grouped_cv(X: np.ndarray, y: np.ndarray, groups: np.ndarray, n_splits: int = 5) -> np.ndarray:
    """Balanced accuracy of svm_fold per actor-grouped fold -> (n_splits,)."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold

    scores = []
    for tr, te in GroupKFold(n_splits=n_splits).split(X, y, groups):
        pred, _ = svm_fold(X[tr], y[tr], X[te])
        scores.append(balanced_accuracy_score(y[te], pred))
    return np.array(scores)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/ravdess-speech"))
    ap.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()

    from emovae.data import scan

    utts, skipped = scan(args.data)
    if skipped:
        print(f"[peers] skipped {len(skipped)} files: {skipped[:3]}")
    paths = [u.path for u in utts]
    y = np.array([u.label for u in utts])
    groups = np.array([u.actor for u in utts])
    print(f"[peers] {len(paths)} files, {len(set(groups))} actors, {_n_workers()} cores")

    cache = Path(args.cache_dir)
    peers = {
        "MFCC-stats+SVM": lambda: mfcc_stats(paths, cache),
        "eGeMAPSv02+SVM": lambda: opensmile_functionals(paths, "eGeMAPSv02", cache),
        "ComParE_2016+SVM": lambda: opensmile_functionals(paths, "ComParE_2016", cache),
    }
    rows = []
    for name, extract in peers.items():
        X, seconds = extract()
        t0 = time.perf_counter()
        s = _grouped_cv(X, y, groups, args.folds)
        rows.append((name, X.shape[1], seconds, s, time.perf_counter() - t0))
    print(f"\n{'peer':<18} {'dims':>5} {'extract s':>9} {'ms/file':>8} {'CV s':>6}  balanced accuracy "
          f"({args.folds}-fold, actor-grouped)")
    for name, d, seconds, s, cv_s in rows:
        print(f"{name:<18} {d:>5} {seconds:>9.1f} {1000 * seconds / len(paths):>8.1f} {cv_s:>6.1f}  "
              f"{s.mean():.3f} ± {s.std():.3f}  [{' '.join(f'{v:.3f}' for v in s)}]")


if __name__ == "__main__":
    main()
