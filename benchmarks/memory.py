"""Training memory benchmark (issue 20): peak resident memory of ``emovae train`` against the corpus size.

Trains on the first 10 and on all 20 RAVDESS development actors (600 and 1200 clips), each with the default four
speed copies (5 feature sets per clip) and the voice student, each run a fresh ``python -m emovae train``
subprocess whose peak RSS is read from ``os.wait4`` (the kernel's ru_maxrss of that process). Memory depends on
the data held, not on the epochs: the runs train 1 student epoch and 2 VAE epochs, without cross-validation.
The clips are listed in a manifest with their real paths, so features come from the on-disk cache when an
earlier run has extracted them (``emovae.extraction.default_cache_dir``). From the two points: memory fixed and
growth per 1000 clips.

Usage: python benchmarks/memory.py [--data RAVDESS_DIR] [--src SRC_DIR] [--out FILE]
       ``--src``: the emovae sources to measure (default: this checkout's src), e.g. an older commit's
       (``git archive COMMIT src | tar -x -C /tmp/old``), to compare before and after.
       python benchmarks/memory.py --quick     # 2 and 4 actors; results to a temporary folder; not a result
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

from emovae.corpus import scan


def write_manifest(items, path: Path) -> int:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "speaker", "corpus"])
        for it in items:
            w.writerow([os.path.realpath(it.path), it.label, it.speaker, it.corpus])
    return len(items)


def measure(manifest: Path, out: Path, src: Path, threads: int) -> dict:
    """Peak RSS (GiB) and wall time (s) of one training subprocess."""
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "emovae", "-q", "train", "--data", str(manifest), "--out", str(out),
           "--threads", str(threads), "--jobs", "1", "--epochs", "2", "--voice-epochs", "1", "--cv", "0"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"training failed ({proc.returncode}):\n{err[-3000:]}")
    return {"peak_gib": usage.ru_maxrss / 2**20, "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(ap, quick="2 and 4 actors")
    ap.add_argument("--src", default=str(common.REPO / "src"), help="emovae sources to measure")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    items, _ = scan(a.data)
    speakers = sorted({it.speaker for it in items})
    sizes = (2, 4) if a.quick else (10, 20)
    rows = []
    with tempfile.TemporaryDirectory(prefix="emovae-memory-") as tmp:
        for n in sizes:
            keep = set(speakers[:n])
            manifest = Path(tmp) / f"actors-{n}.csv"
            clips = write_manifest([it for it in items if it.speaker in keep], manifest)
            r = measure(manifest, Path(tmp) / f"model-{n}", Path(a.src), a.threads)
            rows.append({"actors": n, "clips": clips, **r})
            print(f"{n} actors, {clips} clips (+4 speed copies each): peak {r['peak_gib']:.2f} GiB, "
                  f"{r['seconds']:.0f} s", flush=True)
    (c1, p1), (c2, p2) = [(r["clips"], r["peak_gib"]) for r in rows]
    per_1000 = (p2 - p1) / (c2 - c1) * 1000
    fixed = p1 - per_1000 * c1 / 1000
    print(f"growth {per_1000:.2f} GiB per 1000 clips, fixed {fixed:.2f} GiB", flush=True)
    md = ["# Training memory: peak RSS of `emovae train` against the corpus size", "",
          *common.header_lines("memory.py"), f"- Sources measured: `{a.src}`", "",
          "Each run: a fresh `python -m emovae train` process (voice student 1 epoch, VAE 2 epochs, no CV, "
          f"{a.threads} torch thread(s)), the clips and their four speed copies (0.8, 0.9, 1.1, 1.2); peak RSS is "
          "the process's ru_maxrss. Features from the on-disk cache. Wall times depend on what else the machine "
          "runs (other jobs shared its 2 cores in the committed run); the RSS does not.", "",
          "| actors | clips (+ 4 speed copies each) | peak RSS | wall time |", "|---|---|---|---|",
          *[f"| {r['actors']} | {r['clips']} | {r['peak_gib']:.2f} GiB | {r['seconds']:.0f} s |" for r in rows], "",
          f"Fit through the two points: **{fixed:.2f} GiB fixed + {per_1000:.2f} GiB per 1000 clips** (with speed "
          f"copies); so {(24 - fixed) / per_1000 * 1000 if per_1000 > 0 else float('inf'):.0f} clips would fit "
          "24 GB at this slope."]
    common.write_results(a.out or common.results_path("memory", a.quick), "\n".join(md))


if __name__ == "__main__":
    main()
