"""End-to-end latency per clip (decode -> features -> model) on one thread, emovae vs. openSMILE + SVM.

In one run, over the dev files: emovae through onnxruntime, emovae through torch, and openSMILE eGeMAPSv02
extraction + RBF SVM (the peer); the decode + resample floor (soundfile's decode and soxr's resampling alone, what
any path must pay) and how far above it the whole path is. Also: model size on disk, cold start of `emovae predict
one.wav`, peak RSS of that process, and the size of a runtime-only install (numpy, soundfile, soxr, onnxruntime; no
torch).

``--baseline DIR``: an older emovae checked out in DIR (``git worktree add /tmp/emovae-8922f4a 8922f4a``) timed in
the same run, on the same files and machine: DIR's own benchmarks/latency.py (``--quick --skip-opensmile``, its
src/ first on PYTHONPATH) runs before and after this code's timings, and the table gets its onnxruntime p50 (the
mean of the two rounds) and the ratio, so the gain is a ratio of two measurements taken side by side.

Usage: python benchmarks/latency.py [--model DIR] [--limit N] [--out benchmarks/results-latency.md]
       [--runtime-venv /tmp/emovae-rt]   (created with pip install '.[runtime]' when missing)
       [--baseline /tmp/emovae-8922f4a]
       python benchmarks/latency.py --quick   # smoke run: 10 clips, no runtime install, one cold start
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

import common  # noqa: E402

REPO = common.REPO


def time_path(fn, files) -> np.ndarray:
    """Seconds per file of fn(path), after one warm-up call."""
    fn(files[0])
    out = []
    for f in files:
        t0 = time.perf_counter()
        fn(f)
        out.append(time.perf_counter() - t0)
    return np.array(out)


def decode(path: str):
    """soundfile's decode to float32, mono: (samples,), its rate."""
    import soundfile as sf

    y, sr = sf.read(path, dtype="float32", always_2d=False)
    return (y.mean(axis=1) if y.ndim == 2 else y), sr


def resample(y, sr: int, to: int):
    """soxr's resampling as ``emovae.audio`` does it (HQ), float32."""
    import soxr

    return soxr.resample(y, sr, to, quality="HQ").astype(np.float32, copy=False)


def floor_path(rate: int):
    """The decode + resample floor as a per-clip path: what any path from these files to features must pay."""
    return lambda path: resample(*decode(path), rate)


def stage_times(rec, files) -> dict[str, float]:
    """Median ms per clip of each stage of the onnxruntime path (``Recognizer.predict_file`` taken apart): decode,
    resample, ``features.extract`` (one framing: the frame features, the utterance statistics and the voice
    student's mel bands from the same STFT frames; YIN on its own), the voice student's LSTM, the network (with
    the prediction objects)."""
    from emovae import features

    cfg = rec.feature_config
    out: dict[str, list[float]] = {k: [] for k in (
        "decode", "resample", "features (one framing: frame features, statistics, the student's mel bands)",
        "voice student (its LSTM)", "network and prediction")}
    for f in [files[0], *files]:
        t0 = time.perf_counter()
        y, sr = decode(f)
        t1 = time.perf_counter()
        y = resample(y, sr, cfg.sample_rate)
        t2 = time.perf_counter()
        X = [features.extract(y, cfg.sample_rate, cfg)]
        t3 = time.perf_counter()
        X = rec.network.prepare(X)
        t4 = time.perf_counter()
        rec.predict_features(X)
        t5 = time.perf_counter()
        for k, a, b in zip(out, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5)):
            out[k].append((b - a) * 1000)
    return {k: float(np.median(v[1:])) for k, v in out.items() if cfg.voice or not k.startswith("voice")}


def stream_rtf(rec, files, minutes: float = 2.0, block_s: float = 0.1) -> dict[str, float]:
    """``emovae stream``'s cost on a long recording: the clips joined end to end (with 0.3 s of silence between) up
    to ``minutes``, pushed in ``block_s`` chunks through ``stream.run`` (2 s window, 0.5 s hop); the real-time
    factor is processing seconds per second of audio, and each chunk's push time gives the per-event delay."""
    from emovae import audio
    from emovae.stream import EmotionStream

    sr = rec.feature_config.sample_rate
    parts, total = [], 0
    for f in files:
        y = audio.load(f, sr)
        parts += [y, np.zeros(int(0.3 * sr), np.float32)]
        total += len(y) + int(0.3 * sr)
        if total >= minutes * 60 * sr:
            break
    signal, block = np.concatenate(parts), int(block_s * sr)
    s, pushes, events = EmotionStream(rec, sr), [], 0
    t0 = time.perf_counter()
    for i in range(0, len(signal), block):
        t = time.perf_counter()
        events += len(list(s.push(signal[i:i + block])))
        pushes.append(time.perf_counter() - t)
    events += len(list(s.flush()))
    seconds = time.perf_counter() - t0
    return {"audio_s": len(signal) / sr, "seconds": seconds, "rtf": seconds / (len(signal) / sr), "events": events,
            "push_p95_ms": float(np.percentile(pushes, 95) * 1000), "push_max_ms": float(np.max(pushes) * 1000)}


def baseline_round(directory: Path, data: str, limit: int, model: str | None) -> dict[str, tuple[float, float]]:
    """The emovae checked out in ``directory`` timed by its own benchmarks/latency.py on the first ``limit`` clips
    of ``data`` (``--quick --skip-opensmile``; its src/ first on PYTHONPATH): {path name: (p50 ms, p95 ms)}."""
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="emovae-baseline-")) / "results-latency.md"
    cmd = [sys.executable, str(directory / "benchmarks" / "latency.py"), "--quick", "--skip-opensmile",
           "--limit", str(limit), "--data", str(data), "--out", str(out), *(["--model", model] if model else [])]
    env = {**os.environ, "PYTHONPATH": str(directory / "src")}
    subprocess.run(cmd, check=True, env=env, cwd=str(directory), capture_output=True, text=True)
    rows = {}
    for line in out.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("emovae"):
            rows[cells[0]] = (float(cells[1]), float(cells[2]))
    return rows


def short_commit(directory: Path) -> str:
    return subprocess.run(["git", "-C", str(directory), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip() or "unknown"


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def runtime_install(venv: Path) -> tuple[Path, int]:
    """A venv with only emovae's runtime extra (built when missing; emovae itself, with its shipped model,
    reinstalled from the working tree on every run so that a stale copy is never timed); returns (python,
    site-packages bytes)."""
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", f"{REPO}[runtime]"], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(REPO)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    return py, du(site)


_WRAPPER = """
import resource, subprocess, sys, time
t0 = time.perf_counter()
subprocess.run([sys.executable, "-m", "emovae", "predict", sys.argv[1]], check=True, capture_output=True)
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""


def cold_start(py: Path, clip: Path, repeats: int = 5) -> tuple[float, float]:
    """Median wall seconds and max peak RSS (MB) of `python -m emovae predict clip` in a fresh process.

    Each run goes through a fresh wrapper process, so that the RSS is that of the predict process alone
    (RUSAGE_CHILDREN keeps the maximum over every child a process ever waited for)."""
    times, rss = [], []
    for _ in range(repeats):
        out = subprocess.run([str(py), "-c", _WRAPPER, str(clip)], check=True, capture_output=True, text=True,
                             cwd="/tmp").stdout.split()
        times.append(float(out[0]))
        rss.append(float(out[1]))
    return float(np.median(times)), float(max(rss))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(ap, quick="10 clips, no runtime install, one cold start; --data is then the "
                                          "folder the clips come from")
    ap.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N files (0 = all)")
    ap.add_argument("--out", help="results file (default: benchmarks/results-latency.md)")
    ap.add_argument("--runtime-venv", default="/tmp/emovae-rt")
    ap.add_argument("--skip-opensmile", action="store_true")
    ap.add_argument("--baseline", metavar="DIR", help="an older emovae checked out in DIR (a git worktree), timed by "
                    "its own benchmarks/latency.py in the same run, before and after this code")
    args = ap.parse_args()
    args.out = args.out or str(common.results_path("latency", args.quick))
    if args.quick:
        args.limit = args.limit or 10
    if not args.skip_opensmile and not common.have_opensmile():
        print("[latency] opensmile is not installed (pip install 'emovae[bench]'): the peer's row is skipped")
        args.skip_opensmile = True

    import torch

    torch.set_num_threads(1)
    from emovae import Recognizer
    from emovae.modelfile import PRETRAINED_DIR

    model_dir = Path(args.model) if args.model else PRETRAINED_DIR
    from emovae.corpus import scan

    items = scan(args.data)[0]  # the labelled clips of the corpus folder (emovae.corpus naming conventions)
    if args.limit:
        items = items[: args.limit]
    files, labels = [it.path for it in items], [it.label for it in items]
    onnx = Recognizer.load(model_dir, backend="onnx", threads=1)
    tor = Recognizer.load(model_dir, backend="torch")
    clip_s = np.mean([__import__("soundfile").info(f).duration for f in files[:200]])
    load_before = os.getloadavg()
    base, base_rounds = Path(args.baseline) if args.baseline else None, []
    if base is not None:  # round 1 of the older code, before this code's timings
        print(f"[latency] baseline {short_commit(base)}, round 1 ...", flush=True)
        base_rounds.append(baseline_round(base, args.data, len(files), args.model))
    rows = {}
    rows["emovae, onnxruntime"] = time_path(onnx.predict_file, files)
    rows["decode + resample alone (the floor)"] = time_path(floor_path(onnx.feature_config.sample_rate), files)
    stages = stage_times(onnx, files)
    rows["emovae, torch"] = time_path(tor.predict_file, files)
    tta = Recognizer.load(model_dir, backend="onnx", threads=1, tta=True)  # opt-in: the clip + 4 speed copies
    rows["emovae, onnxruntime, --tta (opt-in)"] = time_path(tta.predict_file, files)
    if not args.skip_opensmile:
        rows["openSMILE eGeMAPSv02 + SVM"] = time_path(common.egemaps_svm_path(files, labels), files)
    # this code's onnx path again, so that both codes are timed before and after everything else
    rows["emovae, onnxruntime"] = np.concatenate([rows["emovae, onnxruntime"], time_path(onnx.predict_file, files)])
    if base is not None:
        print(f"[latency] baseline {short_commit(base)}, round 2 ...", flush=True)
        base_rounds.append(baseline_round(base, args.data, len(files), args.model))
    stream = stream_rtf(onnx, files, minutes=0.5 if args.quick else 2.0)
    load_after = os.getloadavg()

    size = du(model_dir)
    onnx_size = (model_dir / "model.onnx").stat().st_size
    clip = Path(files[0])
    if args.quick:  # no venv to build: the runtime-install rows are left out
        rt_bytes = cold = rss = None
        full_cold, full_rss = cold_start(Path(sys.executable), clip, repeats=1)
    else:
        py, rt_bytes = runtime_install(Path(args.runtime_venv))
        cold, rss = cold_start(py, clip)
        full_cold, full_rss = cold_start(Path(sys.executable), clip)

    ref = np.median(rows["emovae, onnxruntime"])
    m = common.machine()
    lines = [
        "# Latency benchmark", "",
        (f"Run {m['date'][:10]} on {m['node']}: {m['cpu']}, {m['cores']} cores, "
         f"Python {m['python']}, emovae at {m['commit']}, one thread per path. {len(files)} RAVDESS dev clips, mean "
         f"{clip_s:.2f} s. Command: `{common.command_line('latency.py')}`. Load average (1, 5, 15 min) before the "
         f"run {' / '.join(f'{v:.2f}' for v in load_before)}, after it {' / '.join(f'{v:.2f}' for v in load_after)}."),
        "", ("End to end per clip: decode (48 kHz FLAC) -> resample -> features -> network. This code's onnxruntime "
             "path is timed twice (first and last), its p50 over both."), "",
        "| path | p50 ms | p95 ms | real-time factor (p50) | p50 vs emovae onnx |", "|---|---|---|---|---|",
    ]
    for name, t in rows.items():
        p50, p95 = np.median(t) * 1000, np.percentile(t, 95) * 1000
        lines.append(f"| {name} | {p50:.2f} | {p95:.2f} | {p50 / 1000 / clip_s:.4f} | {np.median(t) / ref:.2f}x |")
    name = "emovae, onnxruntime"
    if base_rounds and all(name in r for r in base_rounds):
        b50 = float(np.mean([r[name][0] for r in base_rounds]))
        b95 = float(np.mean([r[name][1] for r in base_rounds]))
        lines.append(f"| emovae at {short_commit(base)}, onnxruntime (its own latency.py, mean of 2 rounds: "
                     f"{', '.join(f'{r[name][0]:.2f}' for r in base_rounds)} ms) | {b50:.2f} | {b95:.2f} | "
                     f"{b50 / 1000 / clip_s:.4f} | {b50 / 1000 / ref:.2f}x |")
        lines += ["", (f"This code's p50 is **{ref * 1000 / b50 * 100:.0f} %** of {short_commit(base)}'s in the "
                       f"same run: a speed-up of {b50 / (ref * 1000):.2f}x.")]
    floor = float(np.median(rows["decode + resample alone (the floor)"]))
    lines += ["", (f"The floor (decode + resample alone) is {floor * 1000:.2f} ms p50: the whole onnxruntime path "
                   f"is {ref / floor:.2f}x the floor, {(ref - floor) * 1000:.2f} ms above it (features and network); "
                   f"the floor is {floor / ref * 100:.0f} % of the path.")]
    lines += ["", "Where the onnxruntime path's time goes (median ms per clip of each stage, timed separately):", "",
              "| stage | ms |", "|---|---|", *(f"| {k} | {v:.2f} |" for k, v in stages.items()),
              f"| sum | {sum(stages.values()):.2f} |"]
    lines += ["", (f"Streaming (`emovae stream`: 2 s window, 0.5 s hop, 0.1 s chunks) over {stream['audio_s']:.0f} s "
                   f"of these clips joined end to end: {stream['seconds']:.2f} s of processing, real-time factor "
                   f"**{stream['rtf']:.4f}** ({1 / stream['rtf']:.0f}x faster than real time), {stream['events']} "
                   f"events; a chunk's push takes {stream['push_p95_ms']:.1f} ms p95, {stream['push_max_ms']:.1f} ms "
                   "at most (the delay an event adds after its audio arrives).")]
    lines += [
        "", "| measure | value |", "|---|---|",
        f"| model folder on disk ({' + '.join(sorted(p.name for p in model_dir.iterdir() if p.is_file()))}) | "
        f"{size / 1024:.0f} KiB |",
        f"| model.onnx alone | {onnx_size / 1024:.0f} KiB |",
        *([] if args.quick else [
            f"| runtime install (site-packages of a venv with `emovae[runtime]`) | {rt_bytes / 2**20:.0f} MiB |",
            f"| cold start `emovae predict one.flac`, runtime install (median of 5) | {cold:.2f} s |",
            f"| peak RSS of that process | {rss:.0f} MB |"]),
        f"| cold start, full dev install (torch present, onnx backend) | {full_cold:.2f} s |",
        f"| peak RSS of that process | {full_rss:.0f} MB |",
    ]
    if args.quick:
        lines += ["", "**Quick smoke run**: a few clips, no runtime install, one cold start; not a result."]
    text = "\n".join(lines) + "\n"
    print(text)
    common.write_results(args.out, text)


if __name__ == "__main__":
    main()
