"""Batch feature extraction over many files: parallel workers, a cache keyed by file identity and config.

The per-clip work is ``features.extract(audio.load(path))``; this module only schedules it, caches it
and collects the results into a FeatureTable a user can save and open.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import audio, features
from .config import FeatureConfig, config_hash, from_dict, to_dict
from .data import EMOTIONS, Utterance, scan
from .errors import DataError, EmovaeError

#: Bump when feature code changes its output for the same config, so that caches are never stale.
FEATURE_CODE_VERSION = 2


def default_cache_dir() -> Path:
    """``$EMOVAE_CACHE_DIR`` or ``~/.cache/emovae``."""
    return Path(os.environ.get("EMOVAE_CACHE_DIR") or Path.home() / ".cache" / "emovae")


class FeatureCache:
    """Per-file feature cache: one .npz per (file path, size, mtime) under a folder per feature config."""

    def __init__(self, root: str | os.PathLike, cfg: FeatureConfig, speed: float = 1.0):
        suffix = "" if speed == 1 else f"-speed{speed:g}"
        self.dir = Path(root) / f"features-v{FEATURE_CODE_VERSION}-{config_hash(cfg)}{suffix}"

    @staticmethod
    def key(path: str | os.PathLike) -> str:
        st = os.stat(path)
        ident = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
        return hashlib.sha1(ident.encode()).hexdigest()

    def get(self, path: str | os.PathLike) -> features.Features | None:
        f = self.dir / f"{self.key(path)}.npz"
        if not f.exists():
            return None
        try:
            with np.load(f) as z:
                return features.Features(z["frames"], tuple(z["frame_names"]), z["stats"], tuple(z["stat_names"]),
                                         z["mel"] if "mel" in z.files else None)
        except Exception:  # a truncated or foreign file: recompute
            return None

    def put(self, path: str | os.PathLike, feats: features.Features) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        f = self.dir / f"{self.key(path)}.npz"
        tmp = f.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, frames=feats.frames, stats=feats.stats, frame_names=np.array(feats.frame_names),
                 stat_names=np.array(feats.stat_names), **({} if feats.mel is None else {"mel": feats.mel}))
        os.replace(tmp, f)


def _extract_one(args: tuple[str, FeatureConfig, float]) -> tuple[str, features.Features | None, str | None]:
    path, cfg, speed = args
    try:
        y = audio.load(path, cfg.sample_rate, min_duration=cfg.min_duration)
        if speed != 1:
            y = audio.speed_perturb(y, cfg.sample_rate, speed)
        return path, features.extract(y, cfg.sample_rate, cfg), None
    except EmovaeError as exc:
        return path, None, str(exc)


def extract_files(
    paths: list[str],
    cfg: FeatureConfig,
    *,
    cache_dir: str | os.PathLike | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
    speed: float = 1.0,
) -> tuple[list[features.Features | None], list[tuple[str, str]]]:
    """Features of each path (None where it failed) and the failures as (path, reason).

    ``n_jobs`` worker processes (default: all cores); ``cache_dir`` None disables the cache; ``speed`` != 1:
    of the audio played that many times faster (``audio.speed_perturb``, for training augmentation).
    """
    from tqdm.auto import tqdm

    cache = FeatureCache(cache_dir, cfg, speed) if cache_dir is not None else None
    out: dict[str, features.Features | None] = {}
    todo = []
    for p in paths:
        hit = cache.get(p) if cache and os.path.exists(p) else None
        if hit is not None:
            out[p] = hit
        else:
            todo.append(p)
    failures: list[tuple[str, str]] = []
    n_jobs = n_jobs or os.cpu_count() or 1
    bar = tqdm(total=len(todo), desc="features" if speed == 1 else f"features x{speed:g}", unit="file",
               disable=not progress or not todo)
    jobs = [(p, cfg, speed) for p in todo]
    if n_jobs == 1 or len(todo) < 4:
        results = map(_extract_one, jobs)
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=min(n_jobs, len(todo)))
        results = pool.map(_extract_one, jobs, chunksize=max(1, min(16, len(todo) // (4 * n_jobs))))
    try:
        for path, feats, err in results:
            out[path] = feats
            if err:
                failures.append((path, err))
            elif cache:
                cache.put(path, feats)
            bar.update()
    finally:
        bar.close()
        if pool:
            pool.shutdown()
    return [out[p] for p in paths], failures


@dataclass
class FeatureTable:
    """Features of a labelled corpus: one row per clip, in ``utterances`` order.

    stats: (clips, n_stats) float32; frames: one (frames_i, n_frame_features) array per clip; mels: with
    ``FeatureConfig.voice``, one (frames_i, 40) float16 mel band array per clip (the voice student's input).
    """

    utterances: list[Utterance]
    stats: np.ndarray
    stat_names: tuple[str, ...]
    frames: list[np.ndarray]
    frame_names: tuple[str, ...]
    config: FeatureConfig
    augmented: dict = field(default_factory=dict)  # speed factor -> [Features or None] per clip (training only)
    mels: list | None = None

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def labels(self) -> np.ndarray:
        """Emotion index per clip (positions in EMOTIONS), (clips,)."""
        return np.array([u.label for u in self.utterances], dtype=np.int64)

    @property
    def actors(self) -> np.ndarray:
        """Actor number per clip, (clips,): the group for speaker-independent splits."""
        return np.array([u.actor for u in self.utterances], dtype=np.int64)

    @property
    def paths(self) -> list[str]:
        return [u.path for u in self.utterances]

    def subset(self, idx: np.ndarray | list[int]) -> "FeatureTable":
        idx = list(np.asarray(idx, dtype=int))
        return FeatureTable([self.utterances[i] for i in idx], self.stats[idx], self.stat_names,
                            [self.frames[i] for i in idx], self.frame_names, self.config,
                            {f: [a[i] for i in idx] for f, a in self.augmented.items()},
                            None if self.mels is None else [self.mels[i] for i in idx])

    def augment(self, factors, *, cache_dir=None, n_jobs=None, progress=True) -> "FeatureTable":
        """Add the features of every clip played at each speed in ``factors`` (``self.augmented``); a clip
        whose perturbed copy fails gets None there. Returns self."""
        for f in factors:
            if f not in self.augmented:
                self.augmented[f] = extract_files(self.paths, self.config, cache_dir=cache_dir, n_jobs=n_jobs,
                                                  progress=progress, speed=f)[0]
        return self

    def augmented_for(self, idx) -> dict:
        """The augmented copies of clips ``idx`` (for ``EmotionRecognizer.fit(..., augmented=...)``)."""
        return {f: [a[i] for i in idx] for f, a in self.augmented.items()}

    def save(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``path`` (.npz: stats, frames concatenated with offsets, names, config) and a CSV index
        beside it (one row per clip: labels, n_frames, and every statistic by name). Returns both paths."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        lengths = np.array([f.shape[0] for f in self.frames], dtype=np.int64)
        frames = np.concatenate(self.frames) if self.frames else np.zeros((0, len(self.frame_names)), np.float32)
        mels = {}
        if self.mels is not None:
            mel_lengths = np.array([m.shape[0] for m in self.mels], dtype=np.int64)
            mels = {"mels": np.concatenate(self.mels), "mel_offsets": np.concatenate([[0], np.cumsum(mel_lengths)])}
        np.savez_compressed(
            path, stats=self.stats, stat_names=np.array(self.stat_names), frames=frames,
            frame_offsets=np.concatenate([[0], np.cumsum(lengths)]), frame_names=np.array(self.frame_names),
            paths=np.array(self.paths), config=json.dumps(to_dict(self.config)), **mels,
        )
        csv_path = path.with_suffix(".csv")
        with open(csv_path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "actor", "gender", "emotion", "intensity", "statement", "repetition", "n_frames",
                        *self.stat_names])
            for u, n, row in zip(self.utterances, lengths, self.stats):
                w.writerow([u.path, u.actor, u.gender, u.emotion, u.intensity, u.statement, u.repetition, int(n),
                            *(f"{v:.6g}" for v in row)])
        return path, csv_path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureTable":
        from .data import parse_name

        try:
            with np.load(path) as z:
                off, all_frames = z["frame_offsets"], z["frames"]  # each z[...] access decompresses anew
                frames = [all_frames[off[i] : off[i + 1]] for i in range(len(off) - 1)]
                mels = None
                if "mels" in z.files:
                    moff, all_mels = z["mel_offsets"], z["mels"]
                    mels = [all_mels[moff[i] : moff[i + 1]] for i in range(len(moff) - 1)]
                return cls([parse_name(p) for p in z["paths"]], z["stats"], tuple(z["stat_names"]), frames,
                           tuple(z["frame_names"]), from_dict(FeatureConfig, json.loads(str(z["config"]))),
                           mels=mels)
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{path}: not an emovae feature table ({exc})") from None


def extract_dataset(
    folder: str | os.PathLike,
    cfg: FeatureConfig | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
) -> tuple[FeatureTable, list[tuple[str, str]]]:
    """Scan a RAVDESS folder, extract every clip; returns the table and the skipped files with reasons
    (malformed names and unreadable audio). Raises DataError when nothing usable is found."""
    cfg = cfg or FeatureConfig()
    utterances, skipped = scan(folder)
    if not utterances:
        raise DataError(f"{folder}: no RAVDESS-named .wav/.flac files found"
                        + (f" ({len(skipped)} audio files with other names were skipped)" if skipped else ""))
    feats, failures = extract_files([u.path for u in utterances], cfg, cache_dir=cache_dir, n_jobs=n_jobs,
                                    progress=progress)
    keep = [i for i, f in enumerate(feats) if f is not None]
    if not keep:
        raise DataError(f"{folder}: none of the {len(utterances)} files could be read; first error: {failures[0][1]}")
    table = FeatureTable(
        [utterances[i] for i in keep],
        np.stack([feats[i].stats for i in keep]),
        feats[keep[0]].stat_names,
        [feats[i].frames for i in keep],
        feats[keep[0]].frame_names,
        cfg,
        mels=[feats[i].mel for i in keep] if cfg.voice else None,
    )
    return table, skipped + failures


def emotion_counts(table: FeatureTable) -> dict[str, int]:
    """Clips per emotion, in EMOTIONS order."""
    counts = np.bincount(table.labels, minlength=len(EMOTIONS))
    return {e: int(c) for e, c in zip(EMOTIONS, counts)}
