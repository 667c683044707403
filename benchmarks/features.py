"""Feature extraction benchmark: emovae's features against openSMILE eGeMAPSv02 and librosa MFCC statistics.

In one run, on the dev clips:
  1. the whole folder on all cores (every extractor in its own fresh process, so its peak memory is its own):
     emovae cold (empty cache) and warm (the cache just written), openSMILE eGeMAPSv02 functionals and
     librosa MFCC statistics (both uncached, through benchmarks/common.py);
  2. per-clip feature time on one thread (decoded audio in memory, so only the features are timed), over
     the first ``--per-clip`` files after a warm-up: median ms per clip, real-time factor, ratio to emovae.

    python benchmarks/features.py                 # writes benchmarks/results-features.md
    python benchmarks/features.py --quick         # smoke run: 40 clips of 4 actors, 10 for the per-clip timing
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common

SR = 16000


def _peak_rss_mb() -> float:
    """Largest resident set of this process or any of its finished children, MB (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def worker(kind: str, data: str) -> dict:
    """Extract the whole folder with one extractor, in this (fresh) process."""
    from emovae.config import FeatureConfig
    from emovae.corpus import scan

    paths = [it.path for it in scan(data)[0]]
    out: dict = {"files": len(paths)}
    with tempfile.TemporaryDirectory(prefix="emovae-featbench-") as tmp:
        if kind == "emovae":
            from emovae.extraction import extract_dataset

            for phase in ("cold", "warm"):
                t0 = time.perf_counter()
                table, _ = extract_dataset(data, FeatureConfig(), cache_dir=Path(tmp), n_jobs=None, progress=False)
                out[f"{phase}_s"] = time.perf_counter() - t0
            out["features"] = int(table.stats.shape[1])
        else:
            t0 = time.perf_counter()
            X, _ = (common.opensmile_functionals(paths, "eGeMAPSv02", Path(tmp)) if kind == "egemaps"
                    else common.mfcc_stats(paths, Path(tmp)))
            out["cold_s"] = time.perf_counter() - t0
            out["features"] = int(X.shape[1])
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def per_clip(data: str, n: int) -> dict:
    """Median single-thread feature time per clip (ms) of each extractor on decoded audio (openSMILE's when it is
    installed)."""
    from emovae.audio import load
    from emovae.config import FeatureConfig
    from emovae.corpus import scan
    from emovae.features import extract

    paths = [it.path for it in scan(data)[0]][:n]
    clips = [load(p, SR) for p in paths]
    cfg = FeatureConfig()
    fns = {"emovae": lambda y: extract(y, SR, cfg)}
    if common.have_opensmile():
        import opensmile

        smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                feature_level=opensmile.FeatureLevel.Functionals)
        fns["openSMILE eGeMAPSv02"] = lambda y: smile.process_signal(y, SR)
    fns["librosa MFCC statistics"] = common.mfcc_vector
    res = {}
    for name, fn in fns.items():
        for y in clips[:3]:  # warm-up (librosa's numba compilation, openSMILE's first call)
            fn(y)
        times = []
        for y in clips:
            t0 = time.perf_counter()
            fn(y)
            times.append(time.perf_counter() - t0)
        res[name] = {"median_ms": 1000 * float(np.median(times)), "p95_ms": 1000 * float(np.percentile(times, 95))}
    res["mean_clip_s"] = float(np.mean([len(y) / SR for y in clips]))
    res["n"] = len(clips)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(ap, quick="10 clips for the per-clip timing")
    ap.add_argument("--per-clip", type=int, default=200, dest="per_clip", help="clips for the per-clip timing")
    ap.add_argument("--out", help="results file (default: benchmarks/results-features.md)")
    ap.add_argument("--worker", choices=["emovae", "egemaps", "mfcc"], help=argparse.SUPPRESS)
    ap.add_argument("--per-clip-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.data)))
        return 0
    if args.per_clip_worker:
        os.environ["OMP_NUM_THREADS"] = "1"
        print(json.dumps(per_clip(args.data, args.per_clip)))
        return 0

    args.out = args.out or str(common.results_path("features", args.quick))
    kinds = ("emovae", "egemaps", "mfcc") if common.have_opensmile() else ("emovae", "mfcc")
    if "egemaps" not in kinds:
        print("[features] opensmile is not installed (pip install 'emovae[bench]'): its rows are left out")
    data = args.data
    if args.quick:
        quick_tmp = tempfile.TemporaryDirectory(prefix="emovae-quick-")
        data, args.per_clip = str(common.quick_subset(args.data, quick_tmp.name)), min(args.per_clip, 10)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def sub(*extra) -> dict:
        out = subprocess.run([sys.executable, __file__, "--data", data, *extra], env=env, check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    t_run = time.perf_counter()
    whole = {k: sub("--worker", k) for k in kinds}
    clip = sub("--per-clip-worker", "--per-clip", str(args.per_clip))
    n, cores = whole["emovae"]["files"], common.cores()
    audio_s = n * clip["mean_clip_s"]  # approximate: mean duration of the timed clips
    base = clip["emovae"]["median_ms"]
    names = {"emovae": "emovae (cold cache)", "egemaps": "openSMILE eGeMAPSv02", "mfcc": "librosa MFCC statistics"}
    lines = [
        "# Feature extraction benchmark",
        "",
        *common.header_lines("features.py"),
        f"- Data: {n} dev clips (RAVDESS speech, 48 kHz FLAC, decoded and resampled to 16 kHz by every extractor)",
        f"- Whole run: {time.perf_counter() - t_run:.0f} s.",
        "",
        f"## Whole folder, all {cores} cores (each extractor in its own process pool)",
        "",
        "| extractor | features | wall s | files/s | real-time factor | peak RSS of one process |",
        "|---|---|---|---|---|---|",
    ]
    for k in kinds:
        w = whole[k]
        lines.append(f"| {names[k]} | {w['features']} | {w['cold_s']:.1f} | {n / w['cold_s']:.1f} | "
                     f"{w['cold_s'] / audio_s:.4f} | {w['peak_rss_mb']:.0f} MB |")
    e = whole["emovae"]
    lines.append(f"| emovae (warm cache) | {e['features']} | {e['warm_s']:.1f} | {n / e['warm_s']:.0f} | "
                 f"{e['warm_s'] / audio_s:.5f} | |")
    lines += ["", f"Real-time factor = wall time / audio duration ({audio_s / 60:.0f} min of audio, estimated from "
              "the mean duration of the per-clip sample). Wall times include decoding and resampling.", "",
              f"## Per clip, one thread ({clip['n']} clips of mean {clip['mean_clip_s']:.2f} s, audio already "
              "decoded)", "",
              "| extractor | median ms | p95 ms | real-time factor | time vs emovae |", "|---|---|---|---|---|"]
    for name in (n for n in ("emovae", "openSMILE eGeMAPSv02", "librosa MFCC statistics") if n in clip):
        c = clip[name]
        lines.append(f"| {name} | {c['median_ms']:.2f} | {c['p95_ms']:.2f} | "
                     f"{c['median_ms'] / 1000 / clip['mean_clip_s']:.4f} | {c['median_ms'] / base:.2f}x |")
    lines += ["", "## Against the targets", "",
              f"- all {n} files cold on {cores} cores: {e['cold_s']:.1f} s (target at most 60 s: "
              f"{'met' if e['cold_s'] <= 60 else 'NOT met'})",
              f"- warm cache: {e['warm_s']:.1f} s (target at most 5 s: {'met' if e['warm_s'] <= 5 else 'NOT met'})"]
    if "openSMILE eGeMAPSv02" in clip:
        ratio = clip["openSMILE eGeMAPSv02"]["median_ms"] / base
        lines.append(f"- per clip, emovae vs openSMILE eGeMAPSv02: {ratio:.1f}x faster (target at least 3x: "
                     f"{'met' if ratio >= 3 else 'NOT met'})")
    else:
        lines.append("- per clip, emovae vs openSMILE eGeMAPSv02: not measured (opensmile is not installed)")
    lines.append("")
    if args.quick:
        lines += ["**Quick smoke run** (a few clips): not a result.", ""]
    text = "\n".join(lines)
    common.write_results(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
