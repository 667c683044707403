"""Bounded load test of the HTTP service: N concurrent clients posting real clips for a fixed time.

Starts its own server on 127.0.0.1 (``python -m emovae serve`` when the CLI has it, else serve.run through
``python -c``), warms it up, then runs --clients keep-alive clients for --seconds, each posting RAVDESS
clips (raw FLAC bodies) to /v1/predict back to back. Reports predictions/s, p50/p95/p99 latency, errors and
the RSS of the server's processes (VmRSS from /proc) after warm-up and after the load, and writes a markdown
results file. --threads-too also runs the server with its feature processes off (--feature-processes 1), and
--baseline WORKTREE another commit's server and model after it (a git worktree), so the gain is a ratio measured
in one run.

With --burst: --burst-clients (64) clients post one --burst-mb (10) MB upload each, all at once, audio
generated in memory (48 kHz stereo 16-bit WAV, raw body or multipart, a quarter of them garbage of the same
size with ?session=; another quarter good clips with ?session=; a quarter raw bodies sent as curl sends a body
over 1 MB, with Expect: 100-continue); a client answered 429 waits its Retry-After and tries again until
--burst-seconds. Reports the server's RSS at idle, its peak (VmHWM, and VmRSS sampled every 10 ms) and settled
(1 s, 10 s and 30 s after the burst; the target is checked at 30 s), the answers by status, 5xx, connection
errors (a reset instead of an answer), and the sessions the failed requests created (GET /v1/sessions/ID).
Writes the "## Burst" section of --out, keeping the other section (and the throughput run keeps the burst section).

With --replicas: `emovae serve --processes N --session-store redis://...` for each N of --processes (1,2), a
redis-server started here on loopback (or --redis URL); --clients clients post for --seconds on fresh connections,
two clients per speaker session, so one speaker's clips reach different processes at once; reports predictions/s,
p50/p95, errors, the server's total RSS, and lost session updates (per speaker: uploads answered 200 against the
clips its session holds). Writes benchmarks/results-replicas.md (--quick: 5 s runs, a temporary file).

Usage: python benchmarks/load.py [--model DIR] [--clients 8] [--seconds 30] [--data DIR]
       [--workers N] [--threads-too] [--baseline WORKTREE] [--out benchmarks/results-load.md]
       python benchmarks/load.py --burst [--burst-clients 64] [--burst-mb 10] [--burst-seconds 180]
       python benchmarks/load.py --replicas [--processes 1,2] [--clients 8] [--seconds 30] [--quick]
Targets (2 cores): >= 100 predictions/s, p95 <= 100 ms, p99 <= 200 ms at 8 clients, 0 errors, RSS growth < 10 %;
burst: peak <= 500 MB,
settled within 50 MB of idle, 0 5xx, 0 sessions created by failed requests.
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

import common

REPO = Path(__file__).resolve().parents[1]
DATA = common.data_path("ravdess")
PRETRAINED = REPO / "src" / "emovae" / "pretrained"
TARGETS = {"rps": 100.0, "p95_ms": 100.0, "p99_ms": 200.0, "rss_growth": 0.10}  # issue 31: 100/s, p95 100 ms
BURST_TARGETS = {"peak_mb": 500.0, "settled_above_idle_mb": 50.0}
BURST_HEADER = "## Burst"
DEFAULT_OUT = REPO / "benchmarks" / "results-load.md"


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


def launch(cmd: list[str], env: dict, port: int, timeout_s: float) -> subprocess.Popen:
    """Start the server command ``cmd`` and wait until it answers /health on ``port``; exit with its log if it dies."""
    log = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would stall a chatty server
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + timeout_s
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
    raise SystemExit(f"server did not answer /health within {timeout_s:.0f} s")


def stop_server(proc: subprocess.Popen, timeout_s: float) -> None:
    """Terminate a server process, killing it if it has not exited after ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()


def start_server(model: Path, port: int, workers: int | None, feature_processes: int | None = None,
                 src: Path | None = None) -> subprocess.Popen:
    """``emovae serve`` of this checkout, or of the package sources in ``src`` (another commit's worktree)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    if src is not None:
        env["PYTHONPATH"] = str(src)
        cmd = [sys.executable, "-m", "emovae", "-q", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--model", str(model)] + (["--workers", str(workers)] if workers else [])
    elif cli_has_serve():
        cmd = [sys.executable, "-m", "emovae", "-q", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--model", str(model)] + (["--workers", str(workers)] if workers else []) + (
            ["--feature-processes", str(feature_processes)] if feature_processes else [])
    else:
        cfg = f"ServeConfig(workers={workers})" if workers else "ServeConfig()"
        cmd = [sys.executable, "-c",
               "import sys; from emovae.serve import ServeConfig, run; "
               f"run('127.0.0.1', {port}, sys.argv[1], cfg={cfg}, log_level='warning')", str(model)]
    return launch(cmd, env, port, 60)


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


def burst_audio(n_bytes: int, sr: int = 48000, seed: int = 0) -> bytes:
    """A WAV (stereo 16-bit at ``sr``) of about ``n_bytes``: a voice-like harmonic sound with a wandering
    pitch and syllable-rate loudness, different per seed."""
    import io

    import soundfile as sf

    rng = np.random.default_rng(seed)
    n = (n_bytes - 44) // 4
    t = np.arange(n) / sr
    f0 = 140 + 40 * rng.random() + 25 * np.sin(2 * np.pi * 0.7 * t + rng.random() * 6)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.55 + 0.45 * np.sin(2 * np.pi * 3.5 * t)) ** 2
    y = (0.3 * y / np.max(np.abs(y)) + 0.003 * rng.standard_normal(n)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.stack([y, 0.8 * y], axis=1), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def burst_audio_channels(seconds: float = 59.0, channels: int = 8, sr: int = 48000, seed: int = 0) -> bytes:
    """A FLAC of ``channels`` channels at ``sr`` (16-bit) that compresses to under 10 MB although its decoded
    samples take ~90 MB as float32: within the service's limits (60 s, 128 MiB decoded), the most memory a
    10 MB upload can ask for."""
    import io

    import soundfile as sf

    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 130 + 50 * rng.random() + 20 * np.sin(2 * np.pi * 0.5 * t)
    y = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / sr) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    dither = 1e-4 * np.round(0.3 * rng.standard_normal((n, channels)))
    buf = io.BytesIO()
    sf.write(buf, (y[:, None] * (1 - 0.05 * np.arange(channels)) + dither).astype(np.float32), sr, format="FLAC",
             subtype="PCM_16")
    return buf.getvalue()


def multipart(body: bytes, name: str = "clip.wav") -> tuple[bytes, str]:
    boundary = "emovae-load-boundary-7d1f"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()
    return head + body + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def expect_post(port: int, path: str, payload: bytes, ctype: str, wait_s: float = 1.0):
    """POST as curl sends a body over 1 MB: headers with ``Expect: 100-continue``, then the body once the server
    says 100 Continue or after ``wait_s`` without an answer; a final answer before that and no body is sent.
    Returns (status, Retry-After)."""
    import select

    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    try:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n"
                  f"Content-Length: {len(payload)}\r\nExpect: 100-continue\r\n\r\n".encode())
        ready, _, _ = select.select([s], [], [], wait_s)
        if not ready or s.recv(12, socket.MSG_PEEK).startswith(b"HTTP/1.1 100"):
            s.sendall(payload)  # the response parser below skips the 100 Continue
        r = http.client.HTTPResponse(s)
        r.begin()
        r.read()
        return r.status, r.getheader("Retry-After")
    finally:
        s.close()


def burst_client(port: int, k: int, body: bytes, kind: str, barrier: threading.Barrier, stop: float,
                 results: list, expect: bool = False) -> None:
    """One client of the burst: posts its upload once (again after each 429's Retry-After, until ``stop``);
    ``expect``: as curl does, with Expect: 100-continue."""
    path = "/v1/predict" + (f"?session=burst-{kind}-{k}" if kind in ("bad", "session") else "")
    if k % 2:
        payload, ctype = multipart(body)
    else:
        payload, ctype = body, "audio/wav"
    statuses = []
    barrier.wait()
    t0 = time.perf_counter()
    while True:
        retry = None
        conn = None
        try:
            if expect:
                status, retry = expect_post(port, path, payload, ctype)
            else:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                conn.request("POST", path, body=payload, headers={"Content-Type": ctype})
                r = conn.getresponse()
                r.read()
                status, retry = r.status, r.getheader("Retry-After")
            statuses.append(status)
        except (OSError, http.client.HTTPException) as exc:
            statuses.append(type(exc).__name__)
        finally:
            if conn is not None:
                conn.close()
        if statuses[-1] != 429 or retry is None or time.perf_counter() + float(retry) > stop:
            break
        time.sleep(float(retry))
    results.append({"k": k, "kind": kind, "statuses": statuses, "seconds": time.perf_counter() - t0,
                    "session": path.partition("=")[2] or None, "expect": expect})


def get_status(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def run_burst(args, model: Path) -> tuple[str, bool]:
    """The 64 x 10 MB burst; returns its markdown section and whether every target was met."""
    n_bytes = int(args.burst_mb * 1e6)
    kinds = ["bad" if k % 4 == 1 else "session" if k % 4 == 3 else "plain" for k in range(args.burst_clients)]
    expect = [kinds[k] == "plain" and k % 4 == 2 for k in range(args.burst_clients)]  # raw bodies, as curl sends
    t_gen = time.perf_counter()
    if args.burst_audio == "flac8":
        good = [burst_audio_channels(seed=s) for s in range(4)]
        n_bytes = len(good[0])
    else:
        good = [burst_audio(n_bytes, seed=s) for s in range(4)]  # 4 distinct clips, shared by the clients
    garbage = np.random.default_rng(1).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
    bodies = [garbage if kind == "bad" else good[k % 4] for k, kind in enumerate(kinds)]
    print(f"generated {len(good)} clips of {len(good[0]) / 1e6:.1f} MB in {time.perf_counter() - t_gen:.1f} s",
          file=sys.stderr)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    port = free_port()
    proc = start_server(model, port, args.workers)
    samples: list[tuple[float, float]] = []
    sampling = threading.Event()
    try:
        rss_start = tree_rss_mb(proc.pid)
        # warm-up: every path of the burst once, full size (raw, multipart, garbage, a session), so that idle
        # includes what the first use of each imports and caches
        warm = [("/v1/predict", good[0], "audio/wav", 200), ("/v1/predict", *multipart(good[1]), 200),
                ("/v1/predict?session=warm-bad", garbage, "audio/wav", 415),
                ("/v1/predict?session=warm", *multipart(good[2]), 200)]
        for path, body, ctype, expected in warm:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("POST", path, body=body, headers={"Content-Type": ctype})
            r = conn.getresponse()
            r.read()
            conn.close()
            assert r.status == expected, f"warm-up request {path} failed: {r.status}"
        time.sleep(2.0)
        rss_idle = tree_rss_mb(proc.pid)
        hwm_idle = tree_rss_mb(proc.pid, "VmHWM")

        def sample():
            while not sampling.is_set():
                samples.append((time.perf_counter(), tree_rss_mb(proc.pid)))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        results: list = []
        barrier = threading.Barrier(args.burst_clients)
        t0 = time.perf_counter()
        stop = t0 + args.burst_seconds
        threads = [threading.Thread(target=burst_client,
                                    args=(port, k, bodies[k], kinds[k], barrier, stop, results, expect[k]))
                   for k in range(args.burst_clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        time.sleep(1.0)
        rss_1s = tree_rss_mb(proc.pid)
        time.sleep(9.0)
        rss_10s = tree_rss_mb(proc.pid)
        time.sleep(20.0)
        rss_30s = tree_rss_mb(proc.pid)
        sampling.set()
        sampler.join()
        peak_hwm = tree_rss_mb(proc.pid, "VmHWM")
        # sessions: every failed request's session must be absent; the good ones present
        failed_sids = [r["session"] for r in results if r["session"] and r["statuses"][-1] != 200]
        ok_sids = [r["session"] for r in results if r["session"] and r["statuses"][-1] == 200]
        leaked = [sid for sid in failed_sids if get_status(port, f"/v1/sessions/{sid}") != 404]
        missing = [sid for sid in ok_sids if get_status(port, f"/v1/sessions/{sid}") != 200]
        alive = proc.poll() is None
    finally:
        sampling.set()
        stop_server(proc, 10)

    from collections import Counter

    first = Counter(str(r["statuses"][0]) for r in results)
    final = Counter(f"{r['kind']} {r['statuses'][-1]}" for r in results)
    all_answers = [s for r in results for s in r["statuses"]]
    n5xx = sum(1 for s in all_answers if isinstance(s, int) and s >= 500)
    n_conn_err = sum(1 for s in all_answers if not isinstance(s, int))
    peak_sampled = max(v for _, v in samples) if samples else float("nan")
    peak = max(peak_hwm, peak_sampled)
    settled_above = rss_30s - rss_idle
    ok = {"peak": peak <= BURST_TARGETS["peak_mb"],
          "settled": settled_above <= BURST_TARGETS["settled_above_idle_mb"],
          "5xx": n5xx == 0 and n_conn_err == 0, "sessions": not leaked}
    mark = {True: "met", False: "**missed**"}
    served = sorted(r["seconds"] for r in results if r["statuses"][-1] == 200)
    lines = [
        f"{BURST_HEADER}: {args.burst_clients} clients x "
        + (f"{len(good[0]) / 1e6:.1f} MB uploads at once (8-channel 48 kHz FLAC, the most decoded memory per upload)"
           if args.burst_audio == "flac8" else f"{args.burst_mb:g} MB uploads at once"),
        "",
        f"- date: {dt.datetime.now().isoformat(timespec='seconds')}",
        f"- machine: {common.cpu_model()}, {os.cpu_count()} cores visible (shared with other work; load average "
        f"{load_before[0]:.1f} before the run), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        f"- model: {model}; server started by "
        f"{'emovae serve' if cli_has_serve() else 'serve.run via python -c'} with ServeConfig defaults"
        + (f" but {args.workers} prediction threads" if args.workers else ""),
        f"- load: {args.burst_clients} clients released together, one upload each of {len(good[0]) / 1e6:.1f} MB "
        + ("(8-channel 48 kHz 16-bit FLAC, 59 s: 91 MB of float32 samples decoded)" if args.burst_audio == "flac8" else
           f"(48 kHz stereo 16-bit WAV, {len(good[0]) / 192000:.0f} s)") + ", half as raw bodies, half multipart; "
        f"{sum(expect)} of the raw ones with Expect: 100-continue, as curl sends a body over 1 MB; "
        f"{kinds.count('bad')} of them random bytes with ?session= (must fail, must create no session), "
        f"{kinds.count('session')} good ones with ?session=; a 429 is retried after its Retry-After "
        f"until {args.burst_seconds:g} s",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| server RSS (all its processes) at start / idle after warm-up | {rss_start:.0f} / {rss_idle:.0f} MB | |",
        f"| server RSS (all its processes) peak during the burst | {peak:.0f} MB (VmHWM {peak_hwm:.0f}, "
        f"sampled {peak_sampled:.0f}; "
        f"VmHWM at idle {hwm_idle:.0f}) | <= {BURST_TARGETS['peak_mb']:.0f} MB ({mark[ok['peak']]}) |",
        f"| server RSS (all its processes) 1 s / 10 s / 30 s after the burst | {rss_1s:.0f} / {rss_10s:.0f} / "
        f"{rss_30s:.0f} MB "
        f"({settled_above:+.0f} MB vs idle at 30 s) | within {BURST_TARGETS['settled_above_idle_mb']:.0f} MB "
        f"of idle ({mark[ok['settled']]}) |",
        f"| first answers by status | {dict(sorted(first.items()))} | |",
        f"| final answers by kind and status | {dict(sorted(final.items()))} | |",
        f"| all answers (retries included): 5xx / connection errors (resets) | {n5xx} / {n_conn_err} | 0 "
        f"({mark[ok['5xx']]}) |",
        f"| connection errors by kind | {dict(Counter(s for s in all_answers if not isinstance(s, int)))} | |",
        f"| connection errors of Expect: 100-continue clients / of the others | "
        f"{sum(1 for r in results if r['expect'] for s in r['statuses'] if not isinstance(s, int))} / "
        f"{sum(1 for r in results if not r['expect'] for s in r['statuses'] if not isinstance(s, int))} | 0 |",
        f"| sessions created by failed requests | {len(leaked)} of {len(failed_sids)} | 0 ({mark[ok['sessions']]}) |",
        f"| sessions of good requests present | {len(ok_sids) - len(missing)} of {len(ok_sids)} | all |",
        f"| burst wall time; time to a 200 p50 / max | {elapsed:.1f} s; "
        + (f"{np.percentile(served, 50):.1f} / {served[-1]:.1f} s" if served else "none served") + " | |",
        f"| server alive after the run | {alive} | True |",
        "",
        f"Reproduce: `python benchmarks/load.py --burst --burst-clients {args.burst_clients} "
        + (f"--burst-mb {args.burst_mb:g}`." if args.burst_audio == "wav" else "--burst-audio flac8`."),
        "",
    ]
    return "\n".join(lines), all(ok.values()) and alive and not missing


def write_section(out: Path, text: str, burst: bool) -> None:
    """Write ``text`` as the throughput part (before the first BURST_HEADER) or as a burst part of ``out``,
    keeping the others: a burst part replaces the one with the same title line (clients, size and audio
    kind), others are kept in order."""
    old = out.read_text() if out.exists() else ""
    parts = ("\n" + old).split("\n" + BURST_HEADER)
    head, bursts = parts[0].strip("\n"), [BURST_HEADER + b.rstrip("\n") for b in parts[1:]]
    if burst:
        title = text.split("\n", 1)[0]
        if any(b.split("\n", 1)[0] == title for b in bursts):
            bursts = [text.rstrip("\n") if b.split("\n", 1)[0] == title else b for b in bursts]
        else:
            bursts.append(text.rstrip("\n"))
    else:
        head = text.rstrip("\n")
    out.write_text("\n\n".join([head] * bool(head) + bursts) + "\n")


# ------------------------------------------------------------------------ replicas sharing Redis
REPLICA_TARGETS = {"errors": 0, "lost_updates": 0}


def tree_rss_mb(pid: int, field: str = "VmRSS") -> float:
    """VmRSS (or ``field``: VmHWM sums each process's own peak, an upper bound of the total's) of a process and all
    its descendants, MB (a multi-process server's total)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += np.nan_to_num(common.rss_mb(p, field))
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return total


def start_redis() -> tuple[subprocess.Popen, str]:
    """A throw-away redis-server on a free loopback port (no persistence); (process, url)."""
    import shutil

    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not on PATH (apt-get install redis-server), or pass --redis URL")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def start_replicas(model: Path, port: int, processes: int, url: str, workers: int | None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "emovae", "-q", "serve", "--host", "127.0.0.1", "--port", str(port), "--model",
           str(model), "--processes", str(processes), "--session-store", url,
           "--session-rate", "100000", "--session-rate-total", "100000"] + (["--workers", str(workers)] if workers else [])
    return launch(cmd, env, port, 90)


def session_client(port: int, clips: list[bytes], k: int, sid: str, stop: float, lat: list, errors: list,
                   ok_by_session: dict, lock: threading.Lock) -> None:
    """Posts clips to ``?session=sid`` back to back on fresh connections (any process may answer each)."""
    i = k * 7
    while time.perf_counter() < stop:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        t0 = time.perf_counter()
        try:
            conn.request("POST", f"/v1/predict?session={sid}", body=clips[i % len(clips)],
                         headers={"Content-Type": "audio/flac", "Connection": "close"})
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                lat.append(time.perf_counter() - t0)
                with lock:
                    ok_by_session[sid] = ok_by_session.get(sid, 0) + 1
            else:
                errors.append(r.status)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(repr(exc))
        finally:
            conn.close()
        i += 1


def run_replicas(args, model: Path, clips: list[bytes]) -> tuple[str, bool]:
    """Throughput and p95 of 1 vs N service processes sharing one Redis; every session's clip count checked
    against the uploads that succeeded (a lost or doubled update shows as a difference)."""
    load = os.getloadavg()
    redis_proc, url = (None, args.redis) if args.redis else start_redis()
    rows, all_ok = [], True
    try:
        for n in [int(x) for x in args.processes.split(",")]:
            port = free_port()
            proc = start_replicas(model, port, n, url, args.workers)
            try:
                warm = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                for body in clips[:8]:
                    assert post(warm, body) == 200, "warm-up request failed"
                warm.close()
                lat, errors, ok_by_session, lock = [], [], {}, threading.Lock()
                run_id = f"r{n}-{os.getpid()}-{int(time.time())}"
                sids = [f"{run_id}-speaker{k % 4}" for k in range(args.clients)]  # 2 clients per speaker
                t0 = time.perf_counter()
                stop = t0 + args.seconds
                threads = [threading.Thread(target=session_client, args=(port, clips, k, sids[k], stop, lat, errors,
                                                                         ok_by_session, lock))
                           for k in range(args.clients)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                elapsed = time.perf_counter() - t0
                rss = tree_rss_mb(proc.pid)
                lost = 0
                for sid in sorted(set(sids)):
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    c.request("GET", f"/v1/sessions/{sid}")
                    r = c.getresponse()
                    stored = json.loads(r.read()).get("clips", 0) if r.status == 200 else 0
                    c.close()
                    lost += abs(ok_by_session.get(sid, 0) - stored)
            finally:
                stop_server(proc, 15)
            ms = np.array(lat) * 1000 if lat else np.array([np.nan])
            row = {"processes": n, "rps": len(lat) / elapsed, "p50": float(np.percentile(ms, 50)),
                   "p95": float(np.percentile(ms, 95)), "ok": len(lat), "errors": len(errors), "lost": lost,
                   "rss": rss}
            rows.append(row)
            all_ok &= row["errors"] == 0 and lost == 0
            print(f"[load] {n} process(es): {row['rps']:.1f} predictions/s, p95 {row['p95']:.0f} ms, "
                  f"{row['errors']} errors, {lost} lost session updates, server RSS {rss:.0f} MB", flush=True)
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
    lines = ["# emovae service replicas sharing Redis (benchmarks/load.py --replicas)", "",
             *common.header_lines("load.py"),
             f"- Load average before the run: {load[0]:.2f}" + (" (**the machine was busy**: times are pessimistic)"
                                                                 if load[0] > 0.5 * common.cores() else ""),
             f"- Kind: {'**smoke run (--quick): not a result**' if args.quick else 'full run'}",
             f"- Load: {args.clients} clients for {args.seconds:g} s, each posting raw FLAC bodies back to back on "
             f"fresh connections (so any process may answer) with ?session=: 2 clients per speaker, 4 speakers; "
             f"`emovae serve --processes N --session-store redis://...` on one port, Redis on loopback", "",
             "| processes | predictions/s | p50 ms | p95 ms | ok | errors | lost session updates | server RSS MB |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['processes']} | {r['rps']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['ok']} | {r['errors']} | "
              f"{r['lost']} | {r['rss']:.0f} |" for r in rows]
    lines += ["", "Lost session updates: per speaker, |uploads answered 200 - clips the session holds| (0: every "
              "clip counted once, whichever process answered). Targets: 0 errors, 0 lost.", ""]
    return "\n".join(lines), all_ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--data", type=Path, default=DATA, help="folder of RAVDESS clips (searched recursively)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--clips", type=int, default=64, help="distinct clips to cycle through")
    ap.add_argument("--workers", type=int, default=None, help="server prediction threads (default: ServeConfig's)")
    ap.add_argument("--threads-too", action="store_true",
                    help="also run the server with --feature-processes 1 (its threads only), for the ratio")
    ap.add_argument("--baseline", type=Path, help="a git worktree of another commit (e.g. 8922f4a): its server and "
                                                  "its shipped model run after this checkout's, for the ratio")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--burst", action="store_true", help="run the burst of large uploads instead")
    ap.add_argument("--burst-clients", type=int, default=64)
    ap.add_argument("--burst-mb", type=float, default=10.0, help="size of each upload in MB (1e6 bytes)")
    ap.add_argument("--burst-seconds", type=float, default=180.0, help="clients stop retrying after this")
    ap.add_argument("--burst-audio", choices=("wav", "flac8"), default="wav",
                    help="burst uploads: 48 kHz stereo WAV of --burst-mb (default), or flac8: 59 s of 8-channel "
                         "48 kHz FLAC (under 10 MB, 91 MB decoded)")
    ap.add_argument("--replicas", action="store_true",
                    help="1 vs N service processes sharing one Redis (results-replicas.md)")
    ap.add_argument("--processes", default="1,2", help="with --replicas: process counts to compare")
    ap.add_argument("--redis", help="with --replicas: a Redis URL (default: a redis-server started here)")
    ap.add_argument("--quick", action="store_true", help="with --replicas: 5 s per run, results to a temporary file")
    args = ap.parse_args(argv)

    model = args.model or PRETRAINED
    if not (model / "model.json").exists():
        raise SystemExit(f"{model}: no model.json; pass --model DIR (a folder written by 'emovae train')")
    if args.burst:
        text, ok = run_burst(args, model)
        print(text)
        write_section(args.out, text, burst=True)
        print(f"-> {args.out}")
        return 0 if ok else 1
    files = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".wav", ".flac"))[: args.clips]
    if not files:
        raise SystemExit(f"{args.data}: no .wav/.flac clips; pass --data DIR")
    clips = [p.read_bytes() for p in files]
    if args.replicas:
        if args.quick:
            args.seconds = min(args.seconds, 5.0)
        text, ok = run_replicas(args, model, clips)
        print(text)
        common.write_results(common.results_path("replicas", args.quick) if args.out == DEFAULT_OUT and args.quick
                             else (REPO / "benchmarks" / "results-replicas.md" if args.out == DEFAULT_OUT
                                   else args.out), text)
        return 0 if ok else 1

    load_before = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    servers = [("this checkout, default (a feature process per core)", model, None, None)]
    if args.threads_too:
        servers.append(("this checkout, --feature-processes 1 (threads only)", model, 1, None))
    if args.baseline:
        base = args.baseline.resolve()
        servers.append((f"{common.git_commit(base)} ({base.name}, its own shipped model)",
                        base / "src" / "emovae" / "pretrained", None, base / "src"))
    rows = [(label, throughput(args, m, clips, fp, src)) for label, m, fp, src in servers]
    res = rows[0][1]
    ok = {"rps": res["rps"] >= TARGETS["rps"], "p95_ms": res["p95_ms"] <= TARGETS["p95_ms"],
          "p99_ms": res["p99_ms"] <= TARGETS["p99_ms"], "rss_growth": res["rss_growth"] < TARGETS["rss_growth"],
          "errors": res["errors"] == 0}
    meta = json.loads((model / "model.json").read_text())
    clip_s = [len(b) for b in clips]
    mark = {True: "met", False: "**missed**"}
    lines = [
        "# emovae HTTP service under load",
        "",
        f"- date: {dt.datetime.now().isoformat(timespec='seconds')}",
        f"- machine: {common.cpu_model()}, {os.cpu_count()} cores visible, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        f"- model: {model} ({len(meta['classes'])} classes, emovae {meta.get('emovae_version')}); servers started "
        "by `emovae serve`" + (f", {args.workers} prediction threads" if args.workers else ", default prediction "
                               "threads") + "; one after the other, in the order of the table",
        f"- load: {args.clients} keep-alive clients for {args.seconds:.0f} s per server, each posting raw FLAC "
        f"bodies back to back, cycling over {len(clips)} clips from {args.data} (mean "
        f"{np.mean(clip_s) / 1024:.0f} KiB); the clients run in the same machine and share its cores",
        f"- machine load average before the run (other work shares these cores): {load_before[0]:.1f}",
        "",
        "| server | predictions/s | p50 | p95 | p99 | max | ok / errors | RSS start / warm / after (all its "
        "processes) | growth |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        lines.append(f"| {label} | {r['rps']:.1f} | {r['p50_ms']:.0f} ms | {r['p95_ms']:.0f} ms | "
                     f"{r['p99_ms']:.0f} ms | {r['max_ms']:.0f} ms | {r['requests_ok']} / {r['errors']} | "
                     f"{r['rss_start_mb']:.0f} / {r['rss_before_mb']:.0f} / {r['rss_after_mb']:.0f} MB | "
                     f"{100 * r['rss_growth']:+.1f} % |")
    if len(rows) > 1:
        lines += ["", "Against the first row: " + "; ".join(
            f"{label}: {r['rps'] / res['rps']:.2f}x the predictions/s, p95 {r['p95_ms'] / res['p95_ms']:.2f}x"
            for label, r in rows[1:]) + "."]
    lines += [
        "",
        "Targets (the first row): " + ", ".join([
            f"predictions/s >= {TARGETS['rps']:.0f} ({mark[ok['rps']]})",
            f"p95 <= {TARGETS['p95_ms']:.0f} ms ({mark[ok['p95_ms']]})",
            f"p99 <= {TARGETS['p99_ms']:.0f} ms ({mark[ok['p99_ms']]})",
            f"0 errors ({mark[ok['errors']]})",
            f"RSS growth < {100 * TARGETS['rss_growth']:.0f} % ({mark[ok['rss_growth']]})"]) + ".",
        "",
        "Reproduce: `python benchmarks/load.py --clients 8 --seconds 30 --threads-too --baseline WORKTREE` "
        "(WORKTREE: `git worktree add /tmp/base 8922f4a`).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    write_section(args.out, text, burst=False)
    print(f"-> {args.out}")
    return 0 if all(r["server_alive"] and not r["errors"] for _, r in rows) else 1


def throughput(args, model: Path, clips: list[bytes], feature_processes: int | None, src: Path | None) -> dict:
    """One server under ``args.clients`` keep-alive clients for ``args.seconds``: predictions/s, latency
    percentiles (ms), errors and the RSS of all the server's processes (MB)."""
    port = free_port()
    proc = start_server(model, port, args.workers, feature_processes, src)
    try:
        rss_start = tree_rss_mb(proc.pid)
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for body in clips[:16]:
            assert post(warm, body) == 200, "warm-up request failed"
        warm.close()
        rss_before = tree_rss_mb(proc.pid)
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
        rss_after = tree_rss_mb(proc.pid)
        alive = proc.poll() is None
    finally:
        stop_server(proc, 10)
    if errors:
        print("first errors:", errors[:5], file=sys.stderr)
    ms = np.array(lat) * 1000 if lat else np.array([np.nan])
    return {"clients": args.clients, "seconds": round(elapsed, 1), "requests_ok": len(lat), "errors": len(errors),
            "rps": len(lat) / elapsed, "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max()), "rss_start_mb": rss_start, "rss_before_mb": rss_before,
            "rss_after_mb": rss_after, "rss_growth": (rss_after - rss_before) / rss_before, "server_alive": alive}


if __name__ == "__main__":
    sys.exit(main())
