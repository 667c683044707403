"""Batch scoring at scale (issue 23): clips/s of one process, of N plain worker processes and of a Dask
LocalCluster of N workers on the same files; the overhead per file; peak memory per worker; and a kill/resume
check of a large run.

Engines, each scoring the same files with the shipped model into rows (``emovae.batch.score`` rows), partitions of
``emovae.cluster.PARTITION`` files:
- ``single``: ``emovae.batch.score`` in this process (what ``emovae predict --out`` does without flags);
- ``processes``: a ``concurrent.futures.ProcessPoolExecutor`` of N processes running
  ``emovae.cluster.score_partition`` (one model load per process);
- ``dask``: ``emovae.cluster.Engine(workers=N)`` (what ``emovae predict --out ... --workers N`` does);
- ``jobs``: ``emovae.batch.score(rec, files, jobs=N)`` (what ``emovae predict --out`` and ``predict_files`` do by
  default: features on N worker processes, the network on batches of ``batch.CHUNK`` clips in this process; its
  start-up is the model load here, the pool starts inside the scoring; peak RSS of this process only);
- ``egemaps``: the peer, openSMILE's eGeMAPSv02 functionals of each file (decoded as emovae decodes) on N worker
  processes, its SVM not counted (a lower bound of the peer's time); its rows are not emovae's.
Reported per engine: wall time including start-up (pool or cluster start and model loads), the start-up alone
(the time to the first partition), clips/s over the whole run, speed-up against ``single``, the overhead per file
against ``processes`` at equal workers ((wall_dask - wall_processes) / files), the peak RSS (VmHWM) of each
worker process and of this process. Every engine's rows must equal ``single``'s (checked).

``--resume-check``: the corpus listed again and again (symlinks with distinct names in a temporary folder) to
``--resume-files`` files (10 000), then ``emovae predict MANIFEST --out table.csv --workers N`` as a process of
its own, killed with SIGKILL (with its workers: the whole process group) once the table holds about half the
rows, then the same command again to the end; checks that every file has exactly one row (none scored twice,
none lost) and that the second run skipped what the first had written.

Usage: python benchmarks/batch.py [--data DIR] [--workers 2] [--engines single,processes,dask,jobs] [--quick]
       python benchmarks/batch.py --resume-check [--resume-files 10000] [--workers 2] [--quick]
       [--out benchmarks/results-batch.md]
Targets (issue 23, 2 cores): N=2 workers >= 1.8x single; Dask overhead <= 10 % against plain processes;
the resumed run: 0 files twice, 0 lost. ``--quick``: 256 clips (resume check: 600 files); a smoke run, not a result.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

QUICK_FILES, QUICK_RESUME_FILES = 256, 600
SECTION_SPEED, SECTION_RESUME = "## Speed", "## Kill and resume"


def measured_partition(paths, spec, classes):
    """``emovae.cluster.score_partition`` plus the worker's pid and peak RSS (MB) after it."""
    from emovae.cluster import score_partition

    rows = score_partition(paths, spec, classes)
    return rows, os.getpid(), common.rss_mb(field="VmHWM")


def warm(spec, seconds: float = 0.0):
    """Load ``spec``'s model in this worker (then hold it ``seconds``, so that each pool process gets one)."""
    from emovae.cluster import worker_recognizer

    worker_recognizer(spec)
    time.sleep(seconds)
    return os.getpid()


def audio_files(folder: str | os.PathLike) -> list[str]:
    from emovae.batch import expand_inputs

    files, _ = expand_inputs([str(folder)])
    return files


def run_engine(name: str, files: list[str], workers: int) -> dict:
    """Score ``files`` with engine ``name``; returns rows, wall_s, startup_s, worker peak RSS (pid -> MB)."""
    from emovae import batch, cluster

    spec = cluster.ModelSpec()
    parts = cluster.partitions(files)
    peaks: dict[int, float] = {}
    rows: list[dict] = []

    def collect(results):
        for part_rows, pid, peak in results:
            rows.extend(part_rows)
            peaks[pid] = max(peaks.get(pid, 0.0), peak)

    t0 = time.perf_counter()
    if name == "single":
        rec = spec.load()
        t1 = time.perf_counter()
        for part in parts:
            rows += list(batch.score(rec, part))
        peaks[os.getpid()] = common.rss_mb(field="VmHWM")
    elif name == "processes":
        from concurrent.futures import ProcessPoolExecutor

        classes = spec.load().classes
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(warm, [spec] * workers, [0.3] * workers))  # start-up: processes up, models loaded
            t1 = time.perf_counter()
            collect(pool.map(measured_partition, parts, [spec] * len(parts), [classes] * len(parts)))
    elif name == "dask":
        classes = spec.load().classes
        with cluster.Engine(workers=workers) as engine:
            engine.client.run(warm, spec)
            t1 = time.perf_counter()
            collect(engine.map(measured_partition, parts, spec, classes))
    elif name == "jobs":
        rec = spec.load()
        t1 = time.perf_counter()
        rows = list(batch.score(rec, files, jobs=workers))
        peaks[os.getpid()] = common.rss_mb(field="VmHWM")
    elif name == "egemaps":  # the peer: openSMILE eGeMAPSv02 functionals of each file on as many processes
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, initializer=common.init_smile, initargs=("eGeMAPSv02",)) as pool:
            list(pool.map(time.sleep, [0.3] * workers))  # start-up: processes up, extractors built
            t1 = time.perf_counter()
            feats = list(pool.map(common.smile_one, files, chunksize=16))
        rows = [{"file": f, "egemaps": len(x)} for f, x in zip(files, feats)]
    else:
        raise SystemExit(f"unknown engine {name!r}: use single, processes, dask, jobs or egemaps")
    t2 = time.perf_counter()
    return {"rows": rows, "wall_s": t2 - t0, "startup_s": t1 - t0, "work_s": t2 - t1, "peaks": peaks}


def speed(args, files: list[str]) -> list[str]:
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    results = {}
    for name in engines:
        print(f"[batch] {name}: {len(files)} files, {1 if name == 'single' else args.workers} worker(s) ...",
              flush=True)
        results[name] = r = run_engine(name, files, args.workers)
        r["cps"] = len(files) / r["work_s"]
        print(f"[batch] {name}: {r['wall_s']:.1f} s (start-up {r['startup_s']:.1f} s, then {r['cps']:.1f} clips/s), "
              f"worker peak RSS {', '.join(f'{v:.0f}' for v in r['peaks'].values())} MB", flush=True)
    ref = results.get("single")
    if "egemaps" in results and "jobs" in results:
        ratio = results["jobs"]["cps"] / results["egemaps"]["cps"]
        peer = (f"emovae's default batch (jobs) {ratio:.2f}x the clips/s of eGeMAPSv02 extraction alone on as many "
                "processes")
        print(f"[batch] {peer}", flush=True)
    for name, r in results.items():
        if ref is not None and name != "egemaps" and r["rows"] != ref["rows"]:
            raise SystemExit(f"{name}: its rows differ from the single process's")
    lines = [SECTION_SPEED, "",
             f"{len(files)} files of {args.data}, the shipped model, partitions of 64 files; identical rows from "
             "every emovae engine (checked).", "",
             "Start-up: pool or cluster up and the model loaded in every worker (once per run); clips/s and the "
             "overhead per file are of the scoring after it.", "",
             "| engine | workers | start-up s | scoring s | clips/s | vs single | overhead/file vs processes | "
             "peak RSS per worker MB |", "|---|---|---|---|---|---|---|---|"]
    plain = results.get("processes")
    for name, r in results.items():
        n = 1 if name == "single" else args.workers
        vs = f"{r['cps'] / ref['cps']:.2f}x" if ref else "-"
        over = "-"
        if name == "dask" and plain:
            per_file = (r["work_s"] - plain["work_s"]) / len(files) * 1000
            over = f"{per_file:+.2f} ms ({(r['work_s'] / plain['work_s'] - 1) * 100:+.1f} %)"
        rss = ", ".join(f"{v:.0f}" for v in r["peaks"].values()) or "-"
        lines.append(f"| {name} | {n} | {r['startup_s']:.1f} | {r['work_s']:.1f} | {r['cps']:.1f} | {vs} | {over} "
                     f"| {rss} |")
    if "egemaps" in results and "jobs" in results:
        lines += ["", f"The peer: {peer}."]
    lines += ["", f"This process's peak RSS (client; holds the rows and, for single, the model): "
                  f"{common.rss_mb(field='VmHWM'):.0f} MB.", ""]
    if ref and plain and "dask" in results:
        d = results["dask"]
        lines.append(f"Targets: {args.workers} workers >= 1.8x single: processes {plain['cps'] / ref['cps']:.2f}x, "
                     f"dask {d['cps'] / ref['cps']:.2f}x; Dask overhead <= 10 % against processes: "
                     f"{(d['work_s'] / plain['work_s'] - 1) * 100:+.1f} % (start-up {d['startup_s']:.1f} s against "
                     f"{plain['startup_s']:.1f} s, once per run).")
        lines.append("")
    return lines


def table_rows(path: Path) -> list[str]:
    from emovae.batch import read_table

    return [r["file"] for r in read_table(path)[1] if r.get("emotion")]


def resume_check(args, files: list[str]) -> list[str]:
    """Kill a --workers run midway (SIGKILL, the whole process group), resume it, check every row once."""
    n = QUICK_RESUME_FILES if args.quick else args.resume_files
    tmp = Path(tempfile.mkdtemp(prefix="emovae-resume-"))
    try:
        links = []
        for i in range(n):
            src = Path(files[i % len(files)])
            link = tmp / "clips" / f"copy{i // len(files):02d}" / src.name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(src.resolve())
            links.append(str(link))
        manifest = tmp / "manifest.csv"
        manifest.write_text("path\n" + "\n".join(links) + "\n")
        out = tmp / "table.csv"
        cmd = [sys.executable, "-m", "emovae", "predict", str(manifest), "--out", str(out),
               "--workers", str(args.workers)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        print(f"[batch] resume check: {n} files; first run, killed at ~{n // 2} rows ...", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, start_new_session=True, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        killed_at = None
        while proc.poll() is None:
            time.sleep(0.5)
            if out.exists() and sum(1 for _ in open(out, encoding="utf-8")) - 1 >= n // 2:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                killed_at = time.perf_counter() - t0
                break
        if killed_at is None:
            raise SystemExit(f"the first run ended (rc {proc.returncode}) before it could be killed: "
                             f"{proc.stderr.read()[-500:]}")
        first_rows = len(table_rows(out))
        print(f"[batch] killed after {killed_at:.1f} s with {first_rows} complete rows; resuming ...", flush=True)
        t1 = time.perf_counter()
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        resumed_s = time.perf_counter() - t1
        summary = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""
        rows = table_rows(out)
        twice = len(rows) - len(set(rows))
        lost = len(set(links) - {os.path.normpath(r) for r in rows})
        print(f"[batch] resumed in {resumed_s:.1f} s (rc {res.returncode}): {summary}; {len(rows)} rows, "
              f"{twice} twice, {lost} lost", flush=True)
        ok = res.returncode == 0 and twice == 0 and lost == 0 and len(rows) == n
        return [SECTION_RESUME, "",
                f"`emovae predict MANIFEST --out table.csv --workers {args.workers}` over {n} files (the corpus "
                f"listed {n / len(files):.1f} times through symlinks), killed with SIGKILL (client and workers) "
                f"after {killed_at:.1f} s holding {first_rows} complete rows, then run again: {resumed_s:.1f} s, "
                f"\"{summary}\".", "",
                f"Rows {len(rows)} of {n}; scored twice: {twice}; lost: {lost}. **{'PASS' if ok else 'FAIL'}**", ""]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_arguments(ap, quick=f"{QUICK_FILES} files (resume check: {QUICK_RESUME_FILES})")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--engines", default="single,processes,dask")
    ap.add_argument("--files", type=int, default=0, help="score only the first N files (default: all)")
    ap.add_argument("--resume-check", action="store_true", dest="resume_check")
    ap.add_argument("--resume-files", type=int, default=10000, dest="resume_files")
    ap.add_argument("--out", help="results file (default benchmarks/results-batch.md; --quick: a temporary one)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    files = audio_files(args.data)
    if not files:
        raise SystemExit(f"no audio files in {args.data}")
    if args.quick or args.files:
        files = files[:args.files or QUICK_FILES]
    load = os.getloadavg()
    m = common.machine()
    section = resume_check(args, files) if args.resume_check else speed(args, files)
    busy = load[0] > 0.5 * m["cores"]
    note = (f"- Load average before the run: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} on {m['cores']} cores: "
            + ("**the machine was busy** (another job running): times are pessimistic, ratios indicative"
               if busy else "the machine was quiet"))
    kind = "**smoke run (--quick): not a result**" if args.quick else "full run"
    path = Path(args.out) if args.out else common.results_path("batch", args.quick)
    old = path.read_text() if path.exists() else ""
    keep = ""
    other = SECTION_SPEED if args.resume_check else SECTION_RESUME
    if other in old:  # keep the other section of an earlier run (up to the next section or note)
        keep = old[old.index(other):]
        ends = [i for i in (keep.find("\n## ", 1), keep.find("\n(from an earlier run")) if i > 0]
        keep = keep[:min(ends)] if ends else keep
    text = "\n".join(["# Batch scoring at scale (benchmarks/batch.py)", "", *common.header_lines("batch.py", m),
                      note, f"- Kind: {kind}", "", *section])
    if keep:
        text += "\n" + f"(from an earlier run:)\n\n{keep.strip()}\n"
    common.write_results(path, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
