"""Bounded load test of the HTTP service: N concurrent clients posting real clips for a fixed time.

Starts its own server on 127.0.0.1 (``python -m emovae serve`` when the CLI has it, else serve.run through
``python -c``), warms it up, then runs --clients keep-alive clients for --seconds, each posting RAVDESS
clips (raw FLAC bodies) to /v1/predict back to back. Reports predictions/s, p50/p90/p99 latency, errors and
the server's RSS (VmRSS from /proc) after warm-up and after the load, and writes a markdown results file.

Usage: python benchmarks/load.py [--model DIR] [--clients 8] [--seconds 30] [--data DIR]
       [--workers N] [--out benchmarks/results-load.md]
Targets (2 cores): >= 50 predictions/s, p99 <= 200 ms at 8 clients, RSS growth < 10 %.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ravdess-speech"
PRETRAINED = REPO / "src" / "emovae" / "pretrained"
TARGETS = {"rps": 50.0, "p99_ms": 200.0, "rss_growth": 0.10}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (VmRSS in /proc/PID/status); nan off Linux."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_has_serve() -> bool:
    try:
        from emovae.cli import build_parser

        return "serve" in build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    except Exception:
        return False


def start_server(model: Path, port: int, workers: int | None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    if cli_has_serve():
        cmd = [sys.executable, "-m", "emovae", "-q", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--model", str(model)] + (["--workers", str(workers)] if workers else [])
    else:
        cfg = f"ServeConfig(workers={workers})" if workers else "ServeConfig()"
        cmd = [sys.executable, "-c",
               "import sys; from emovae.serve import ServeConfig, run; "
               f"run('127.0.0.1', {port}, sys.argv[1], cfg={cfg}, log_level='warning')", str(model)]
    log = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would stall a chatty server
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise SystemExit(f"server exited ({proc.returncode}): {log.read().decode(errors='replace')[-2000:]}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                c.close()
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not answer /health within 60 s")


def post(conn: http.client.HTTPConnection, body: bytes) -> int:
    conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": "audio/flac"})
    r = conn.getresponse()
    r.read()
    return r.status


def client(port: int, clips: list[bytes], offset: int, stop: float, lat: list, errors: list) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = offset
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        try:
            status = post(conn, clips[i % len(clips)])
        except (OSError, http.client.HTTPException) as exc:
            errors.append(repr(exc))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        else:
            (lat if status == 200 else errors).append(time.perf_counter() - t0 if status == 200 else status)
        i += 1
    conn.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--data", type=Path, default=DATA, help="folder of RAVDESS clips (searched recursively)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--clips", type=int, default=64, help="distinct clips to cycle through")
    ap.add_argument("--workers", type=int, default=None, help="server prediction threads (default: ServeConfig's)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results-load.md")
    args = ap.parse_args(argv)

    model = args.model or PRETRAINED
    if not (model / "model.json").exists():
        raise SystemExit(f"{model}: no model.json; pass --model DIR (a folder written by 'emovae train')")
    files = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".wav", ".flac"))[: args.clips]
    if not files:
        raise SystemExit(f"{args.data}: no .wav/.flac clips; pass --data DIR")
    clips = [p.read_bytes() for p in files]

    load_before = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    port = free_port()
    proc = start_server(model, port, args.workers)
    try:
        rss_start = rss_mb(proc.pid)
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for body in clips[:16]:
            assert post(warm, body) == 200, "warm-up request failed"
        warm.close()
        rss_before = rss_mb(proc.pid)
        lat: list[float] = []
        errors: list = []
        t0 = time.perf_counter()
        stop = t0 + args.seconds
        threads = [threading.Thread(target=client, args=(port, clips, k * 7, stop, lat, errors))
                   for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        rss_after = rss_mb(proc.pid)
        alive = proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()

    ms = np.array(lat) * 1000 if lat else np.array([np.nan])
    res = {"clients": args.clients, "seconds": round(elapsed, 1), "requests_ok": len(lat), "errors": len(errors),
           "rps": len(lat) / elapsed, "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
           "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()), "rss_start_mb": rss_start,
           "rss_before_mb": rss_before, "rss_after_mb": rss_after,
           "rss_growth": (rss_after - rss_before) / rss_before, "server_alive": alive}
    ok = {"rps": res["rps"] >= TARGETS["rps"], "p99_ms": res["p99_ms"] <= TARGETS["p99_ms"],
          "rss_growth": res["rss_growth"] < TARGETS["rss_growth"]}
    meta = json.loads((model / "model.json").read_text())
    clip_s = [len(b) for b in clips]
    mark = {True: "met", False: "**missed**"}
    lines = [
        "# emovae HTTP service under load",
        "",
        f"- date: {dt.datetime.now().isoformat(timespec='seconds')}",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores visible, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        f"- model: {model} ({len(meta['classes'])} classes, emovae {meta.get('emovae_version')}); "
        f"server started by {'emovae serve' if cli_has_serve() else 'serve.run via python -c'}"
        + (f", {args.workers} prediction threads" if args.workers else ", default prediction threads"),
        f"- load: {args.clients} keep-alive clients for {res['seconds']} s, each posting raw FLAC bodies back to "
        f"back, cycling over {len(clips)} clips from {args.data} (mean {np.mean(clip_s) / 1024:.0f} KiB); "
        "the clients run in the same machine and share its cores",
        f"- machine load average before the run (other work shares these cores): {load_before[0]:.1f}",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| predictions/s | {res['rps']:.1f} | >= {TARGETS['rps']:.0f} ({mark[ok['rps']]}) |",
        f"| latency p50 | {res['p50_ms']:.0f} ms | |",
        f"| latency p90 | {res['p90_ms']:.0f} ms | |",
        f"| latency p99 | {res['p99_ms']:.0f} ms | <= {TARGETS['p99_ms']:.0f} ms ({mark[ok['p99_ms']]}) |",
        f"| latency max | {res['max_ms']:.0f} ms | |",
        f"| requests ok / errors | {res['requests_ok']} / {res['errors']} | 0 errors |",
        f"| server RSS at start / after warm-up / after load | {rss_start:.0f} / {rss_before:.0f} / "
        f"{rss_after:.0f} MB | |",
        f"| RSS growth under load | {100 * res['rss_growth']:+.1f} % | < {100 * TARGETS['rss_growth']:.0f} % "
        f"({mark[ok['rss_growth']]}) |",
        f"| server alive after the run | {alive} | True |",
        "",
        "Reproduce: `python benchmarks/load.py --model DIR --clients 8 --seconds 30`.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if errors:
        print("first errors:", errors[:5], file=sys.stderr)
    args.out.write_text(text)
    print(f"-> {args.out}")
    return 0 if alive and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
