"""Batch feature extraction over many files: parallel workers, a cache keyed by file identity and config.

The per-clip work is ``features.extract(audio.load(path))``; this module only schedules it, caches it
and collects the results of a corpus (``corpus.scan_all``) into a FeatureTable a user can save and open.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import audio, augment, features
from .config import FeatureConfig, config_hash, from_dict, to_dict
from .corpus import Item, Problem, class_order, scan_all, select_labels
from .errors import DataError, EmovaeError

#: Bump when feature code changes its output for the same config, so that caches are never stale.
FEATURE_CODE_VERSION = 3  # 3: the DC offset is removed before extraction


def default_cache_dir() -> Path:
    """``$EMOVAE_CACHE_DIR`` or ``~/.cache/emovae``."""
    return Path(os.environ.get("EMOVAE_CACHE_DIR") or Path.home() / ".cache" / "emovae")


_NAMES: dict[tuple, tuple] = {}


def shared_names(names) -> tuple[str, ...]:
    """``names`` as a tuple of str, the same tuple object for every equal list: the clips of a corpus share their
    column names (a tuple of about 1,000 numpy strings per clip and copy cost about 90 KB each)."""
    t = tuple(str(n) for n in names)
    return _NAMES.setdefault(t, t)


def _with_shared_names(f: features.Features | None) -> features.Features | None:
    if f is None:
        return None
    return features.Features(f.frames, shared_names(f.frame_names), f.stats, shared_names(f.stat_names), f.mel)


def variant_label(variant: float | str) -> str:
    """The name of a training copy: "" (the clip itself, speed 1), "speed0.9" or "degraded1"."""
    if isinstance(variant, str):
        return variant
    return "" if variant == 1 else f"speed{variant:g}"


class FeatureCache:
    """Per-file feature cache: one .npz per (file path, size, mtime) under a folder per feature config."""

    def __init__(self, root: str | os.PathLike, cfg: FeatureConfig, variant: float | str = 1.0):
        label = variant_label(variant)
        suffix = f"-{label}" + (f"-a{augment.AUGMENT_CODE_VERSION}" if isinstance(variant, str) else "") if label else ""
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
                return features.Features(z["frames"], shared_names(z["frame_names"]), z["stats"],
                                         shared_names(z["stat_names"]), z["mel"] if "mel" in z.files else None)
        except Exception:  # a truncated or foreign file: recompute
            return None

    def put(self, path: str | os.PathLike, feats: features.Features) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        f = self.dir / f"{self.key(path)}.npz"
        tmp = f.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, frames=feats.frames, stats=feats.stats, frame_names=np.array(feats.frame_names),
                 stat_names=np.array(feats.stat_names), **({} if feats.mel is None else {"mel": feats.mel}))
        os.replace(tmp, f)


def variant_signal(y: np.ndarray, path: str, cfg: FeatureConfig, variant: float | str) -> np.ndarray:
    """The training copy ``variant`` of clip ``y`` (read from ``path``): played at that speed (a float; 1 = the
    clip itself), or a degraded copy ("degraded1", ...: ``augment.degraded_copy``, seeded per file and copy, its
    crops taken within the speech)."""
    if isinstance(variant, str):
        return augment.degraded_copy(y, augment.clip_rng(path, variant), cfg.sample_rate,
                                     span=features.speech_bounds(y, cfg))
    return y if variant == 1 else audio.speed_perturb(y, cfg.sample_rate, variant)


def _extract_one(args: tuple[str, FeatureConfig, float | str]) -> tuple[str, features.Features | None, str | None]:
    path, cfg, variant = args
    try:
        y = variant_signal(audio.load(path, cfg.sample_rate, min_duration=cfg.min_duration), path, cfg, variant)
        return path, features.extract(y, cfg.sample_rate, cfg), None
    except EmovaeError as exc:
        return path, None, str(exc)


def extract_part(paths: list[str], cfg: FeatureConfig, variant: float | str = 1.0) -> list[tuple]:
    """(path, Features or None, error or None) of each path: one partition of work for a distributed engine."""
    return [_extract_one((p, cfg, variant)) for p in paths]


#: files per task on a distributed engine (``cluster.Engine``)
PARTITION = 64


def extract_files(
    paths: list[str],
    cfg: FeatureConfig,
    *,
    cache_dir: str | os.PathLike | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
    variant: float | str = 1.0,
    engine=None,
    pool_to: int | None = None,
) -> tuple[list[features.Features | None], list[tuple[str, str]]]:
    """Features of each path (None where it failed) and the failures as (path, reason).

    ``n_jobs`` worker processes (default: all cores); ``cache_dir`` None disables the cache; ``variant``: of a
    training copy of the audio (``variant_signal``: a speed factor, or "degradedK").
    ``engine``: a ``cluster.Engine`` (anything with ``map(fn, parts, *args)`` yielding in order): the files not
    in the cache are extracted on its workers, ``PARTITION`` at a time, instead of ``n_jobs`` local processes;
    this process reads and fills the cache, so the table is the same. ``pool_to``: each file's frames are kept
    only average-pooled to this many steps (``features.pool_frames``), file by file as they arrive (the cache
    keeps them whole).
    """
    from tqdm.auto import tqdm

    def kept(f: features.Features | None) -> features.Features | None:
        return f if f is None or pool_to is None else replace(f, frames=features.pool_frames(f.frames, pool_to))

    cache = FeatureCache(cache_dir, cfg, variant) if cache_dir is not None else None
    out: dict[str, features.Features | None] = {}
    todo = []
    for p in paths:
        hit = cache.get(p) if cache and os.path.exists(p) else None
        if hit is not None:
            out[p] = kept(hit)
        else:
            todo.append(p)
    failures: list[tuple[str, str]] = []
    n_jobs = n_jobs or os.cpu_count() or 1
    bar = tqdm(total=len(todo), desc=f"features {variant_label(variant)}".strip(), unit="file",
               disable=not progress or not todo)
    jobs = [(p, cfg, variant) for p in todo]
    pool = None
    if engine is not None:
        parts = [todo[i:i + PARTITION] for i in range(0, len(todo), PARTITION)]
        results = (r for part in engine.map(extract_part, parts, cfg, variant) for r in part)
    elif n_jobs == 1 or len(todo) < 4:
        results = map(_extract_one, jobs)
    else:
        pool = ProcessPoolExecutor(max_workers=min(n_jobs, len(todo)))
        results = pool.map(_extract_one, jobs, chunksize=max(1, min(16, len(todo) // (4 * n_jobs))))
    try:
        for path, feats, err in results:
            feats = _with_shared_names(feats)
            if err:
                failures.append((path, err))
            elif cache:
                cache.put(path, feats)
            out[path] = kept(feats)
            bar.update()
    finally:
        bar.close()
        if pool:
            pool.shutdown()
    return [out[p] for p in paths], failures


@dataclass
class FeatureTable:
    """Features of a labelled corpus: one row per clip, in ``items`` order (``corpus.Item``: path, label,
    speaker, corpus).

    stats: (clips, n_stats) float32; frames: one (frames_i, n_frame_features) array per clip; mels: with
    ``FeatureConfig.voice``, one (frames_i, 40) float16 mel band array per clip (the voice student's input).
    """

    items: list[Item]
    stats: np.ndarray
    stat_names: tuple[str, ...]
    frames: list[np.ndarray]
    frame_names: tuple[str, ...]
    config: FeatureConfig
    augmented: dict = field(default_factory=dict)  # speed factor or "degradedK" -> [Features or None] per clip
    # (training copies only)
    mels: list | None = None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> np.ndarray:
        """Label name per clip, (clips,)."""
        return np.array([it.label for it in self.items], dtype=object)

    @property
    def classes(self) -> tuple[str, ...]:
        """The labels present, in ``corpus.class_order``."""
        return class_order(it.label for it in self.items)

    @property
    def speakers(self) -> np.ndarray:
        """Speaker per clip as ``corpus/speaker``, (clips,): the group of speaker-independent splits."""
        return np.array([it.group for it in self.items], dtype=object)

    @property
    def corpora(self) -> np.ndarray:
        """Corpus name per clip, (clips,)."""
        return np.array([it.corpus for it in self.items], dtype=object)

    @property
    def dimension_targets(self) -> np.ndarray:
        """Arousal and valence targets (clips, 2) of the labels (``affect.dimension_targets``); a RAVDESS-named
        file's own emotion and intensity instead (calm stays calm when a label map merged it into neutral); NaN
        rows for labels the coordinate table does not place."""
        from .affect import dimension_targets, ravdess_fields

        emotions, intensities = ravdess_fields(self.paths)
        return dimension_targets([e or label for e, label in zip(emotions, self.labels)], intensities)

    @property
    def has_speakers(self) -> bool:
        """True when every clip has a speaker id (folders without a speaker pattern have none)."""
        return all(it.speaker for it in self.items)

    @property
    def paths(self) -> list[str]:
        return [it.path for it in self.items]

    def subset(self, idx: np.ndarray | list[int]) -> "FeatureTable":
        idx = list(np.asarray(idx, dtype=int))
        return FeatureTable([self.items[i] for i in idx], self.stats[idx], self.stat_names,
                            [self.frames[i] for i in idx], self.frame_names, self.config,
                            {f: [a[i] for i in idx] for f, a in self.augmented.items()},
                            None if self.mels is None else [self.mels[i] for i in idx])

    def augment(self, factors, *, degraded: int = 0, cache_dir=None, n_jobs=None, progress=True,
                engine=None, pool_to: int | None = None) -> "FeatureTable":
        """Add the features of every clip played at each speed in ``factors``, and of ``degraded`` degraded
        copies of it (``self.augmented``, keys the factors and "degraded1".."degradedN"); a clip whose copy fails
        gets None there (``engine``: see ``extract_files``). ``pool_to``: keep each copy's frames only
        average-pooled to this many steps (``features.pool_frames``; give the VAE's ``seq_len``, the only form in
        which training reads a copy's frames, unchanged by pooling again): the shipped recipe's peak went from
        5.2 to 3.8-3.9 GB in runs of one student epoch (a full fit: 4.9 GB; benchmarks/results-memory.md).
        Returns self."""
        for f in (*factors, *augment.degraded_names(degraded)):
            if f not in self.augmented:
                self.augmented[f] = extract_files(self.paths, self.config, cache_dir=cache_dir, n_jobs=n_jobs,
                                                  progress=progress, variant=f, engine=engine, pool_to=pool_to)[0]
        return self

    @property
    def speed_copies(self) -> list[list]:
        """The speed copies only (no degraded copies): per factor, [Features or None] per clip."""
        return [a for f, a in self.augmented.items() if not isinstance(f, str)]

    def augmented_for(self, idx) -> dict:
        """The augmented copies of clips ``idx`` (for ``EmotionRecognizer.fit(..., augmented=...)``)."""
        return {f: [a[i] for i in idx] for f, a in self.augmented.items()}

    def counts(self) -> dict[str, int]:
        """Clips per label, in ``classes`` order."""
        n = {c: 0 for c in self.classes}
        for it in self.items:
            n[it.label] += 1
        return n

    def save(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``path`` (.npz: stats, frames concatenated with offsets, names, items, config) and a CSV index
        beside it (one row per clip: file, label, speaker, corpus, n_frames, and every statistic by name)."""
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
            paths=np.array(self.paths), labels=np.array([it.label for it in self.items]),
            speakers=np.array([it.speaker for it in self.items]), corpora=np.array([it.corpus for it in self.items]),
            config=json.dumps(to_dict(self.config)), **mels,
        )
        csv_path = path.with_suffix(".csv")
        with open(csv_path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "label", "speaker", "corpus", "n_frames", *self.stat_names])
            for it, n, row in zip(self.items, lengths, self.stats):
                w.writerow([it.path, it.label, it.speaker, it.corpus, int(n), *(f"{v:.6g}" for v in row)])
        return path, csv_path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureTable":
        try:
            with np.load(path) as z:
                off, all_frames = z["frame_offsets"], z["frames"]  # each z[...] access decompresses anew
                frames = [all_frames[off[i] : off[i + 1]] for i in range(len(off) - 1)]
                mels = None
                if "mels" in z.files:
                    moff, all_mels = z["mel_offsets"], z["mels"]
                    mels = [all_mels[moff[i] : moff[i + 1]] for i in range(len(moff) - 1)]
                items = [Item(str(p), str(lab), str(spk), str(c))
                         for p, lab, spk, c in zip(z["paths"], z["labels"], z["speakers"], z["corpora"])]
                return cls(items, z["stats"], tuple(z["stat_names"]), frames, tuple(z["frame_names"]),
                           from_dict(FeatureConfig, json.loads(str(z["config"]))), mels=mels)
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{path}: not an emovae feature table of this version ({exc}); extract it again with "
                            "'emovae features'") from None


def extract_dataset(
    sources,
    cfg: FeatureConfig | None = None,
    *,
    labels=None,
    mapping: dict[str, str] | None = None,
    speaker_pattern: str | None = None,
    skip_bad_rows: bool = True,
    cache_dir: str | os.PathLike | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
    engine=None,
) -> tuple[FeatureTable, list[Problem]]:
    """Read one or several labelled sources (``corpus.scan_all``: folders by naming convention, a folder per
    label, manifests), keep ``labels`` after ``mapping`` (``corpus.select_labels``), and extract every clip.
    Returns the table and the problems (skipped rows and names, unreadable audio, dropped labels), each with
    the file and reason (``engine``: extract on a cluster, see ``extract_files``). Raises DataError when nothing usable is found, and (unless ``skip_bad_rows``) before any
    extraction when a manifest has bad rows, listing up to 20 of them with file and line."""
    cfg = cfg or FeatureConfig()
    items, problems = scan_all(sources, speaker_pattern)
    rows = [pr for pr in problems if pr.row]
    if rows and not skip_bad_rows:
        raise DataError(f"{len(rows)} bad manifest row(s): " + "; ".join(map(str, rows[:20]))
                        + ("; ..." if len(rows) > 20 else "") + "; fix them, or pass --skip-bad-rows to leave them out")
    items, dropped = select_labels(items, labels, mapping)
    problems += [Problem(f"label {lab!r}", f"{n} clip(s) dropped (not in --labels)") for lab, n in dropped.items()]
    if not items:
        raise DataError("no clips left after choosing labels " + ", ".join(labels or ()) + "; "
                        + ", ".join(f"{lab} {n}" for lab, n in dropped.items()) + " dropped")
    feats, failures = extract_files([it.path for it in items], cfg, cache_dir=cache_dir, n_jobs=n_jobs,
                                    progress=progress, engine=engine)
    keep = [i for i, f in enumerate(feats) if f is not None]
    if not keep:
        raise DataError(f"none of the {len(items)} files could be read; first error: {failures[0][1]}")
    table = FeatureTable(
        [items[i] for i in keep],
        np.stack([feats[i].stats for i in keep]),
        feats[keep[0]].stat_names,
        [feats[i].frames for i in keep],
        feats[keep[0]].frame_names,
        cfg,
        mels=[feats[i].mel for i in keep] if cfg.voice else None,
    )
    return table, problems + [Problem(p, why) for p, why in failures]
