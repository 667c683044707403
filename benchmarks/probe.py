"""Probe of the hardening (issue 33): the bad inputs of tests/badinputs.py, damaged model folders, odd headers,
a session store outage and retries, through every interface, counting what must never happen.

- Bad audio (tests/badinputs.py: files and arrays): the CLI (``emovae.cli.main``: predict and stream), the Python
  API (``Recognizer.predict_file``, ``predict_proba``), the stream (``stream.file_chunks`` + ``stream.run``) and
  HTTP (a real ``emovae serve`` on 127.0.0.1: raw bodies with ?session=, multipart without).
- Odd headers: every header the service reads, with odd values, on every endpoint, over raw sockets.
- Damaged model folders (copies of the shipped model with one damage each): the CLI (predict, stream) and the
  API in a child process under a 3 GiB address-space limit, and ``emovae serve --model`` (must refuse to start);
  every one must be a ModelFormatError (CLI: exit 2, one line naming the folder), nothing else.
- A session store outage: ``emovae serve --session-store redis://...`` with a redis-server started here on
  loopback, 6 clients posting with and without ?session= while Redis is stopped and started again.
- Retries: one clip sent three times to one session (in-process store and Redis): counted once.

Counts: 5xx (a 503 with Retry-After while the store is down is the designed answer and counted apart), tracebacks
(in any output or log), hangs (no answer within HANG_S), wrong answers (a valid input refused or a bad one taken),
damaged models that failed otherwise than with ModelFormatError, and the clips each retried session holds.
Writes benchmarks/results-probe.md (--out), with the machine and its load. Network: 127.0.0.1 only; everything
started here is stopped here; every wait is bounded.

Usage: python benchmarks/probe.py [--out benchmarks/results-probe.md] [--quick]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

import common

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.badinputs import arrays, write_files  # noqa: E402

PRETRAINED = REPO / "src" / "emovae" / "pretrained"
HANG_S = 60.0
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
WEIRD = ("", " ", "null", "*", "http://", "http://[::1", "http://x:99999999999", "[", "]", ":", "::::", "%00",
         "a" * 5000, "http://a\tb", "é", "\x7f", "1e3", "-1", "99999999999999999999", "http://[fe80::1%25eth0]",
         "https://xn--nxasmq6b.example", "..", ".", "/etc/passwd", "' OR 1=1 --", "multipart/form-data; boundary=",
         "100-continue", "https://evil.example", "evil.example", "127.0.0.1:0")
HEADERS = ("origin", "host", "content-length", "content-type", "x-session-id", "idempotency-key", "x-request-id",
           "expect", "access-control-request-method", "transfer-encoding")
ENDPOINTS = (("GET", "/health"), ("GET", "/"), ("POST", "/v1/predict"), ("POST", "/v1/predict?session=probe-h"),
             ("GET", "/v1/sessions/a"), ("DELETE", "/v1/sessions/a"), ("OPTIONS", "/v1/predict"), ("GET", "/v1/model"),
             ("GET", "/docs"), ("GET", "/no/such/page"))


class Tally:
    """What was checked and what went wrong, by kind, with the first examples of each."""

    KINDS = ("5xx", "tracebacks", "hangs", "wrong", "model_not_mfe", "resets")

    def __init__(self):
        self.checks = collections.Counter()
        self.bad = collections.Counter()
        self.examples: dict[str, list[str]] = collections.defaultdict(list)
        self.notes: list[str] = []

    def check(self, section: str, n: int = 1) -> None:
        self.checks[section] += n

    def fail(self, kind: str, section: str, what: str) -> None:
        self.bad[(section, kind)] += 1
        if len(self.examples[kind]) < 8:
            self.examples[kind].append(f"{section}: {what[:300]}")

    def total(self, kind: str) -> int:
        return sum(v for (_, k), v in self.bad.items() if k == kind)


class Hang(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise Hang in the main thread after ``seconds`` (SIGALRM)."""
    def on_alarm(signum, frame):
        raise Hang(f"no answer within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def cli(argv: list[str]) -> tuple[int | str, str]:
    """``emovae.cli.main(argv)`` in this process: (exit code, or the name of what escaped it; stdout + stderr)."""
    from emovae.cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), deadline(HANG_S):
            rc: int | str = main(argv)
    except Hang:
        rc = "hang"
    except BaseException as exc:  # noqa: BLE001 - what escapes main is what the probe counts
        import traceback

        rc = type(exc).__name__
        err.write("".join(traceback.format_exception(exc)))
    return rc, out.getvalue() + err.getvalue()


def judge_cli(t: Tally, section: str, name: str, expect: str, rc, text: str) -> None:
    t.check(section)
    if rc == "hang":
        t.fail("hangs", section, name)
    elif "Traceback" in text or not isinstance(rc, int) or rc == 70:
        t.fail("tracebacks", section, f"{name}: rc {rc}: {text[-300:]}")
    elif expect != "any" and (expect == "ok") != (rc == 0):
        t.fail("wrong", section, f"{name} (expected {expect}): rc {rc}: {text[-200:]}")


# ------------------------------------------------------------------------------------------- bad audio
def probe_audio(t: Tally, corpus, rec) -> None:
    from emovae import stream
    from emovae.errors import EmovaeError

    for name, path, expect in corpus:
        rc, text = cli(["predict", "--json", str(path)])
        judge_cli(t, "audio: CLI predict", name, expect, rc, text)
        if name not in ("one_hour.wav",):  # a stream reads any length: an hour of samples is an hour of windows
            rc, text = cli(["stream", "--json", str(path)])
            judge_cli(t, "audio: CLI stream", name, "any", rc, text)  # silence is an answer in a stream
    for name, path, expect in corpus:
        t.check("audio: API files")
        try:
            with deadline(HANG_S):
                rec.predict_file(path)
            if expect != "ok":
                t.fail("wrong", "audio: API files", f"{name}: accepted")
        except EmovaeError:
            if expect == "ok":
                t.fail("wrong", "audio: API files", f"{name}: refused")
        except Hang:
            t.fail("hangs", "audio: API files", name)
        except Exception as exc:  # noqa: BLE001
            t.fail("tracebacks", "audio: API files", f"{name}: {type(exc).__name__}: {exc}")
        if name == "one_hour.wav":
            continue
        t.check("audio: stream files")
        try:
            with deadline(HANG_S):
                chunks, sr = stream.file_chunks(path)
                list(stream.run(rec, chunks, sr))
        except (EmovaeError, Hang) as exc:
            if isinstance(exc, Hang):
                t.fail("hangs", "audio: stream files", name)
        except Exception as exc:  # noqa: BLE001
            t.fail("tracebacks", "audio: stream files", f"{name}: {type(exc).__name__}: {exc}")
    for name, y, sr, expect in arrays():
        for section, call in (("audio: API arrays", lambda: rec.predict_proba(y, sr)),
                              ("audio: stream arrays", lambda: list(stream.run(rec, [y], sr)))):
            t.check(section)
            try:
                with deadline(HANG_S):
                    call()
                if expect != "ok" and section == "audio: API arrays":
                    t.fail("wrong", section, f"{name}: accepted")
            except EmovaeError:
                if expect == "ok" and section == "audio: API arrays":
                    t.fail("wrong", section, f"{name}: refused")
            except Hang:
                t.fail("hangs", section, name)
            except Exception as exc:  # noqa: BLE001
                t.fail("tracebacks", section, f"{name}: {type(exc).__name__}: {exc}")


# ------------------------------------------------------------------------------------------- HTTP
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m emovae serve`` on 127.0.0.1 with its log in a file; stopped on exit."""

    def __init__(self, *args: str, wait_s: float = 90.0):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="emovae-probe-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, "-m", "emovae", "serve", "--host", "127.0.0.1", "--port",
                                      str(self.port), *args], env=ENV, stdout=self.log, stderr=subprocess.STDOUT)
        deadline_t = time.monotonic() + wait_s
        while time.monotonic() < deadline_t:
            if self.proc.poll() is not None:
                return
            try:
                if request(self.port, "GET", "/health", timeout=5)[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise SystemExit(f"emovae serve {' '.join(args)} did not answer /health within {wait_s:g} s")

    @property
    def up(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        text = Path(self.log.name).read_text(errors="replace")
        os.unlink(self.log.name)
        return text

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.text = self.stop()


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None,
            timeout: float = HANG_S, raw_headers: list[tuple[str, str]] | None = None):
    """One request over a fresh raw connection (any header value, even one http.client refuses): (status,
    headers, body bytes). Raises socket.timeout (a hang) or OSError (a reset)."""
    hdrs = {"host": f"127.0.0.1:{port}", "content-length": str(len(body)), "connection": "close"}
    if not body and method in ("GET", "DELETE", "OPTIONS"):
        hdrs.pop("content-length")
    hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in hdrs.items()]
    lines += [f"{k}: {v}" for k, v in raw_headers or []]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the server may answer before the body
            s.sendall(body)
        r = http.client.HTTPResponse(s, method=method)
        r.begin()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def judge_http(t: Tally, section: str, what: str, call, expect: str = "any") -> tuple | None:
    t.check(section)
    try:
        status, headers, data = call()
    except socket.timeout:
        t.fail("hangs", section, what)
        return None
    except (OSError, http.client.HTTPException) as exc:
        t.fail("resets", section, f"{what}: {type(exc).__name__}")
        return None
    if status >= 500:
        t.fail("5xx", section, f"{what}: {status} {data[:200]!r}")
    if b"Traceback" in data:
        t.fail("tracebacks", section, f"{what}: traceback in the answer")
    if expect == "ok" and status != 200 or expect == "error" and not 400 <= status < 500:
        t.fail("wrong", section, f"{what} (expected {expect}): {status} {data[:200]!r}")
    return status, headers, data


def multipart(body: bytes, name: str) -> tuple[bytes, str]:
    boundary = "emovae-probe-7d1f"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + body + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def server_log(t: Tally, section: str, text: str) -> None:
    n = text.count("Traceback")
    t.check(section + " (server log)")
    if n:
        t.fail("tracebacks", section + " (server log)", f"{n} tracebacks, first: "
               + text[text.index("Traceback"):][:400])


def probe_http(t: Tally, corpus, clip: bytes, quick: bool) -> None:
    with Server() as srv:
        for name, path, expect in corpus:
            if not path.is_file():
                continue
            data = path.read_bytes()
            judge_http(t, "HTTP: bad audio", f"{name} raw ?session=",
                       lambda: request(srv.port, "POST", "/v1/predict?session=probe-audio", data,
                                       {"content-type": "audio/wav"}), expect)
            body, ctype = multipart(data, name)
            judge_http(t, "HTTP: bad audio", f"{name} multipart",
                       lambda: request(srv.port, "POST", "/v1/predict", body, {"content-type": ctype}), expect)
        weird = WEIRD[::3] if quick else WEIRD
        for header in HEADERS:
            for value in weird:
                for method, path in ENDPOINTS:
                    body = clip if method == "POST" else b""
                    hdrs = {"content-type": "audio/wav"} if method == "POST" and header != "content-type" else {}
                    if header in ("host", "content-length"):
                        hdrs[header] = value  # replaces the one request() sends
                        raw = []
                    else:
                        raw = [(header, value)]
                    if header in ("transfer-encoding", "content-length"):
                        body = b""  # a body the server cannot frame would be cut off (a reset, and rightly so)
                    r = judge_http(t, "HTTP: odd headers", f"{method} {path} {header}: {value[:40]!r}",
                                   lambda: request(srv.port, method, path, body, hdrs, timeout=45, raw_headers=raw))
                    if r and 400 <= r[0] < 500 and "json" not in r[1].get("content-type", ""):
                        t.notes.append(f"{method} {path} {header}: {value[:20]!r} -> {r[0]} "
                                       f"{r[1].get('content-type')} (uvicorn's own answer to a malformed request)")
        alive = srv.up
    server_log(t, "HTTP: bad audio and odd headers", srv.text)
    t.check("HTTP: server alive")
    if not alive:
        t.fail("5xx", "HTTP: server alive", "the server died")


# ------------------------------------------------------------------------------------------- damaged models
def damaged_models(root: Path) -> list[tuple[str, Path]]:
    """Copies of the shipped model with one damage each: [(what, folder)]."""
    base = json.loads((PRETRAINED / "model.json").read_text())
    good = json.dumps(base)
    out = []

    def folder(what: str, meta: dict | None = None, text: str | None = None, edit=None) -> None:
        d = root / what
        shutil.copytree(PRETRAINED, d)
        if meta is not None:
            (d / "model.json").write_text(json.dumps(meta))
        if text is not None:
            (d / "model.json").write_text(text)
        if edit is not None:
            edit(d)
        out.append((what, d))

    def changed(fn) -> dict:
        m = json.loads(good)
        fn(m)
        return m

    def swap(d: Path) -> None:
        a, b = (d / "model.onnx").read_bytes(), (d / "voice.onnx").read_bytes()
        (d / "model.onnx").write_bytes(b)
        (d / "voice.onnx").write_bytes(a)

    folder("swapped_model_and_voice_onnx", edit=swap)
    for key, value in (("n_fft", 10**9), ("n_mels", 10**9), ("hop_length", 0), ("sample_rate", 0),
                       ("min_duration", -1), ("win_length", 10**6), ("n_mfcc", 10**5), ("voice", 10**9)):
        folder(f"feature_config.{key}={value}", changed(lambda m, k=key, v=value: m["feature_config"].update({k: v})))
    for key, value in (("seq_len", 10**10), ("latent_dim", 10**9), ("channels", 0)):
        folder(f"vae_config.{key}={value}", changed(lambda m, k=key, v=value: m["vae_config"].update({k: v})))
    folder("classes_3", changed(lambda m: m.update(classes=m["classes"][:3])))
    folder("classes_duplicated", changed(lambda m: m.update(classes=[m["classes"][0]] * len(m["classes"]))))
    folder("scaler_nan", changed(lambda m: m["scalers"]["seq_std"].__setitem__(0, float("nan"))))
    folder("scaler_short", changed(lambda m: m["scalers"].update(stats_mean=m["scalers"]["stats_mean"][:5])))
    folder("speaker_prior_strings", changed(lambda m: m["speaker_prior"].update(mean=["x"] * 3)))
    folder("deep_json", text=good.replace('"classes": ', '"classes": ' + "[" * 100000 + "]" * 100000 + ', "_y": ', 1))
    folder("huge_number", text=good.replace('"n_fft": ', '"n_fft": ' + "9" * 5000 + ', "_x": ', 1))
    folder("infinity", text=good.replace('"n_fft": ', '"n_fft": 1e999, "_x": ', 1))
    folder("truncated_model_json", text=good[: len(good) // 2])
    folder("empty_model_json", text="")
    folder("model_json_a_list", text="[1, 2, 3]")
    folder("model_json_16mb", text=good[:-1] + ', "_pad": "' + "x" * (17 << 20) + '"}')
    folder("missing_model_json", edit=lambda d: (d / "model.json").unlink())
    folder("missing_model_onnx", edit=lambda d: (d / "model.onnx").unlink())
    folder("missing_voice_onnx", edit=lambda d: (d / "voice.onnx").unlink())
    folder("model_onnx_garbage", edit=lambda d: (d / "model.onnx").write_bytes(os.urandom(5000)))
    folder("model_onnx_empty", edit=lambda d: (d / "model.onnx").write_bytes(b""))
    folder("model_onnx_truncated", edit=lambda d: (d / "model.onnx").write_bytes(
        (PRETRAINED / "model.onnx").read_bytes()[:100_000]))
    folder("voice_file_outside", changed(lambda m: m["voice"].update(file="../../etc/passwd")))
    folder("model_json_a_folder", edit=lambda d: ((d / "model.json").unlink(), (d / "model.json").mkdir()))
    return out


MODEL_CHILD = textwrap.dedent("""
    import contextlib, io, json, resource, sys, traceback
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a huge allocation fails instead of swapping
    from emovae.cli import main
    from emovae.errors import ModelFormatError
    from emovae.runtime import Recognizer
    import numpy as np
    clip, folders, intact = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    proba = lambda rec: np.array(list(rec.predict_file(clip).probabilities.values()))
    ref = {b: proba(Recognizer.load(intact, backend=b)) for b in ("onnx", "auto")}
    for d in folders:
        res = {"folder": d}
        for backend in ("onnx", "auto"):
            try:
                rec = Recognizer.load(d, backend=backend)
                p = proba(rec)
                same = p.shape == ref[backend].shape and np.allclose(p, ref[backend], atol=1e-6)
                res["api_" + backend] = "loaded, answers as the intact model" if same else "loaded, answers otherwise"
            except ModelFormatError as exc:
                res["api_" + backend] = "ModelFormatError"
                res["api_names_folder"] = d in str(exc)
            except BaseException as exc:
                res["api_" + backend] = f"{type(exc).__name__}: {str(exc)[:200]}"
        for cmd in (["predict", "--model", d, clip], ["stream", "--model", d, clip]):
            out, err = io.StringIO(), io.StringIO()
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    rc = main(cmd)
            except BaseException as exc:
                rc = type(exc).__name__
                err.write("".join(traceback.format_exception(exc)))
            res["cli_" + cmd[0]] = [rc, (out.getvalue() + err.getvalue())[-3000:]]
        print(json.dumps(res), flush=True)
""")


def probe_models(t: Tally, root: Path, clip_path: Path, quick: bool) -> None:
    models = damaged_models(root / "models")
    if quick:
        models = models[::4]
    unused: set[str] = set()
    r = subprocess.run([sys.executable, "-c", MODEL_CHILD, str(clip_path), json.dumps([str(d) for _, d in models]),
                        str(PRETRAINED)],
                       capture_output=True, text=True, timeout=30 * len(models) + 60, env=ENV)
    done = {}
    for line in r.stdout.splitlines():
        with contextlib.suppress(ValueError):
            res = json.loads(line)
            done[res["folder"]] = res
    for what, d in models:
        res = done.get(str(d))
        t.check("models: API")
        if res is None:
            t.fail("model_not_mfe", "models: API", f"{what}: the child process died (rc {r.returncode}) "
                   f"{r.stderr[-300:]}")
            continue
        harmless = all(res["api_" + b] == "loaded, answers as the intact model" for b in ("onnx", "auto"))
        if harmless:  # damage to a field that no code reads: the model is the intact one
            t.notes.append(f"damaged model {what}: loads and answers exactly as the intact model (the damaged "
                           "field is read by nothing at inference)")
            unused.add(what)
        for backend in ("onnx", "auto"):
            if res["api_" + backend] != "ModelFormatError" and not harmless:
                t.fail("model_not_mfe", "models: API", f"{what} ({backend}): {res['api_' + backend]}")
        if not res.get("api_names_folder") and not harmless:
            t.fail("wrong", "models: API", f"{what}: the error does not name the folder")
        for cmd in ("predict", "stream"):
            rc, text = res["cli_" + cmd]
            t.check(f"models: CLI {cmd}")
            if "Traceback" in text or not isinstance(rc, int) or rc == 70:
                t.fail("tracebacks", f"models: CLI {cmd}", f"{what}: rc {rc}: {text[-300:]}")
            elif (rc != 2 or str(d) not in text) and not (harmless and rc == 0):
                t.fail("model_not_mfe", f"models: CLI {cmd}", f"{what}: rc {rc}: {text[-300:]}")
    for what, d in models:  # emovae serve --model DAMAGED: refuses to start, in one line, no traceback
        if what in unused:
            continue
        t.check("models: emovae serve")
        port = free_port()
        try:
            r = subprocess.run([sys.executable, "-m", "emovae", "serve", "--host", "127.0.0.1", "--port", str(port),
                                "--model", str(d)], capture_output=True, text=True, timeout=HANG_S, env=ENV)
        except subprocess.TimeoutExpired:
            t.fail("hangs", "models: emovae serve", f"{what}: still running after {HANG_S:g} s (it served?)")
            continue
        text = r.stdout + r.stderr
        if "Traceback" in text or r.returncode == 70:
            t.fail("tracebacks", "models: emovae serve", f"{what}: rc {r.returncode}: {text[-300:]}")
        elif r.returncode != 2 or str(d) not in text:
            t.fail("model_not_mfe", "models: emovae serve", f"{what}: rc {r.returncode}: {text[-300:]}")


# ------------------------------------------------------------------------------------------- store outage, retries
def start_redis(port: int) -> subprocess.Popen:
    exe = shutil.which("redis-server")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def retries(t: Tally, port: int, clip: bytes, other: bytes, sid: str, section: str) -> dict:
    """The same clip three times (and once with an Idempotency-Key twice) to session ``sid``: counted once."""
    answers = []
    for _ in range(3):
        r = judge_http(t, section, f"{sid}: the same clip again", lambda: request(
            port, "POST", f"/v1/predict?session={sid}", clip, {"content-type": "audio/wav"}), "ok")
        answers.append(json.loads(r[2]) if r and r[0] == 200 else {})
    for _ in range(2):  # a client's retry of another clip, with its request id
        judge_http(t, section, f"{sid}: Idempotency-Key retry", lambda: request(
            port, "POST", f"/v1/predict?session={sid}", other, {"content-type": "audio/wav",
                                                                 "idempotency-key": f"{sid}-k1"}), "ok")
    r = judge_http(t, section, f"GET /v1/sessions/{sid}", lambda: request(port, "GET", f"/v1/sessions/{sid}"))
    held = json.loads(r[2]).get("clips") if r and r[0] == 200 else None
    probs = [np.array(list(a.get("probabilities", {}).values()) or [np.nan]) for a in answers]
    spread = float(max(np.max(np.abs(p - probs[0])) for p in probs)) if all(p.size == probs[0].size for p in probs) \
        else float("nan")
    res = {"session": sid, "clips_counted": [a.get("session_clips") for a in answers],
           "repeated": [a.get("repeated") for a in answers], "clips_held": held, "posted": 5,
           "probability_change_on_retry": spread}
    t.check(section + ": idempotent")
    if res["clips_counted"] != [1, 1, 1] or held != 2 or not spread < 1e-6:
        t.fail("wrong", section + ": idempotent", json.dumps(res))
    return res


def probe_outage(t: Tally, clip: bytes, other: bytes, quick: bool) -> dict:
    """Redis stopped and started under 6 clients; returns what was seen."""
    rport = free_port()
    redis = start_redis(rport)
    seen = collections.Counter()
    out: dict = {}
    try:
        with Server("--session-store", f"redis://127.0.0.1:{rport}/0") as srv:
            out["retries_redis"] = retries(t, srv.port, clip, other, "bob-redis", "outage: retries (Redis)")
            stop_ev, lock = threading.Event(), threading.Lock()
            phase = ["up"]

            def client(k: int) -> None:
                i = 0
                while not stop_ev.is_set():
                    sid = f"outage-{k}" if i % 2 == 0 else None
                    path = "/v1/predict" + (f"?session={sid}" if sid else "")
                    body = clip if i % 4 else other
                    i += 1
                    try:
                        status, headers, data = request(srv.port, "POST", path, body, {"content-type": "audio/wav"},
                                                        timeout=30)
                    except socket.timeout:
                        key = "hang"
                    except (OSError, http.client.HTTPException) as exc:
                        key = type(exc).__name__
                    else:
                        key = str(status) + (" Retry-After" if status == 503 and "retry-after" in headers else "")
                        if b"Traceback" in data:
                            key += " traceback"
                    with lock:
                        seen[(phase[0], "session" if sid else "plain", key)] += 1

            threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(6)]
            for th in threads:
                th.start()
            time.sleep(3)
            phase[0] = "down"
            t_down = time.monotonic()
            stop(redis)
            time.sleep(3 if quick else 8)
            phase[0] = "restarted"
            redis = start_redis(rport)
            t_back = time.monotonic()
            recovered = None
            while time.monotonic() - t_back < 20:
                try:
                    st = request(srv.port, "POST", "/v1/predict?session=outage-check", clip,
                                 {"content-type": "audio/wav"}, timeout=30)[0]
                except OSError:
                    st = 0
                if st == 200:
                    recovered = time.monotonic() - t_back
                    break
                time.sleep(0.2)
            time.sleep(2)
            stop_ev.set()
            for th in threads:
                th.join(45)
            out["outage_s"] = round(t_back - t_down, 1)
            out["recovered_after_s"] = None if recovered is None else round(recovered, 1)
        text = srv.text
    finally:
        stop(redis)
    out["answers"] = {" / ".join(k): v for k, v in sorted(seen.items())}
    out["log_lines_outage"] = sum(1 for line in text.splitlines() if "session store" in line.lower())
    section = "outage: Redis stopped and started"
    for (ph, kind, key), n in seen.items():
        t.check(section, n)
        if key.startswith("5") and key != "503 Retry-After":
            t.fail("5xx", section, f"{n} x {key} ({ph}, {kind})")
        if key == "503 Retry-After" and kind == "plain":
            t.fail("wrong", section, f"{n} requests without a session answered 503 ({ph})")
        if "traceback" in key:
            t.fail("tracebacks", section, f"{n} answers with a traceback")
        if key == "hang":
            t.fail("hangs", section, f"{n} ({ph}, {kind})")
        if not key[0].isdigit() and key != "hang":
            t.fail("resets", section, f"{n} x {key} ({ph}, {kind})")
    t.check(section + ": recovery")
    if out["recovered_after_s"] is None:
        t.fail("wrong", section + ": recovery", "no session answer within 20 s of Redis returning")
    server_log(t, section, text)
    return out


# ------------------------------------------------------------------------------------------- main
def report(t: Tally, extra: dict, load: tuple, elapsed: float, quick: bool) -> str:
    lines = ["# Probe of bad inputs, damaged models, odd headers, a store outage and retries (issue 33)", "",
             *common.header_lines("probe.py"),
             f"- Load average before / after the run: {load[0]:.1f} / {os.getloadavg()[0]:.1f} on "
             f"{common.cores()} cores (other work shared the machine)",
             f"- Kind: {'**smoke run (--quick): not a result**' if quick else 'full run'}; {elapsed:.0f} s", "",
             "| count | value | target |", "|---|---|---|"]
    for kind, label in (("5xx", "answers 5xx (other than the designed 503 + Retry-After of a store outage)"),
                        ("tracebacks", "tracebacks (outputs, answers, server logs) or exit 70"),
                        ("hangs", f"hangs (no answer within {HANG_S:g} s)"),
                        ("resets", "connections reset instead of an answer"),
                        ("model_not_mfe", "damaged model folders not refused as a model error (ModelFormatError; "
                                          "CLI exit 2 naming the folder; serve refuses to start)"),
                        ("wrong", "wrong answers (a valid input refused, a bad one taken, retries counted twice, "
                                  "no recovery)")):
        lines.append(f"| {label} | {t.total(kind)} | 0 |")
    for res in (extra.get("retries_memory"), extra.get("retries_redis")):
        if res:
            lines.append(f"| clips counted per session, `{res['session']}` ({res['posted']} posts: one clip 3 x, "
                         f"another 2 x with one Idempotency-Key) | answers say {res['clips_counted']}, "
                         f"the session holds {res['clips_held']}; probabilities moved by "
                         f"{res['probability_change_on_retry']:.1g} on retry | 1, 1, 1; 2; 0 |")
    o = extra.get("outage", {})
    lines += ["", "## Checks by section", "", "| section | checks | failures |", "|---|---|---|"]
    for section, n in sorted(t.checks.items()):
        fails = {k: v for (s, k), v in t.bad.items() if s == section}
        lines.append(f"| {section} | {n} | {fails or 0} |")
    if o:
        lines += ["", "## Store outage", "",
                  f"Redis stopped for {o['outage_s']} s under 6 clients (half of the requests with ?session=), then "
                  f"started again (empty); a session answer came back {o['recovered_after_s']} s after it returned; "
                  f"the server logged {o['log_lines_outage']} lines about the session store.", "",
                  "| phase / kind / answer | count |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in o["answers"].items()]
    for kind, ex in t.examples.items():
        lines += ["", f"First {kind}:", ""] + [f"- `{e}`" for e in ex]
    uvicorn_400 = [n for n in t.notes if "uvicorn" in n]
    others = [n for n in t.notes if "uvicorn" not in n]
    if others:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in others]
    if uvicorn_400:
        lines += ["", f"{len(uvicorn_400)} odd-header requests were refused by uvicorn itself (h11: a malformed "
                  "request line or header) with its plain-text 400, before the app; e.g. " + "; ".join(uvicorn_400[:3])]
    lines += ["", "Reproduce: `python benchmarks/probe.py` (about 1 minute on 2 busy cores; `--quick` for a smoke "
              "run).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="results file (default benchmarks/results-probe.md)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: fewer headers and models, a temporary file")
    ap.add_argument("--only", default="audio,http,models,outage", help="sections to run (comma-separated)")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    import soundfile as sf

    from emovae.runtime import load_pretrained

    load = os.getloadavg()
    t0 = time.perf_counter()
    t, extra = Tally(), {}
    with tempfile.TemporaryDirectory(prefix="emovae-probe-") as tmp:
        root = Path(tmp)
        corpus = write_files(root / "audio")
        y = arrays()[0][1]
        buf = io.BytesIO()
        sf.write(buf, np.tile(y, 2), 16000, format="WAV")
        clip = buf.getvalue()
        buf = io.BytesIO()
        sf.write(buf, 0.8 * np.tile(y, 3), 16000, format="WAV")
        other = buf.getvalue()
        (root / "clip.wav").write_bytes(clip)
        if "audio" in only:
            print("[probe] bad audio: CLI, API, stream", file=sys.stderr, flush=True)
            probe_audio(t, corpus, load_pretrained(backend="onnx"))
        if "http" in only:
            print("[probe] HTTP: bad audio, odd headers, retries", file=sys.stderr, flush=True)
            probe_http(t, corpus, clip, args.quick)
            with Server() as srv:
                extra["retries_memory"] = retries(t, srv.port, clip, other, "bob", "HTTP: retries (in-process store)")
            server_log(t, "HTTP: retries", srv.text)
        if "models" in only:
            print("[probe] damaged model folders: API, CLI, serve", file=sys.stderr, flush=True)
            probe_models(t, root, root / "clip.wav", args.quick)
        if "outage" in only:
            if shutil.which("redis-server"):
                print("[probe] Redis outage", file=sys.stderr, flush=True)
                extra["outage"] = probe_outage(t, clip, other, args.quick)
                extra["retries_redis"] = extra["outage"].pop("retries_redis")
            else:
                t.notes.append("redis-server not on PATH: no store outage probed")
    text = report(t, extra, load, time.perf_counter() - t0, args.quick)
    print(text)
    out = args.out or common.results_path("probe", args.quick)
    common.write_results(out, text)
    print(f"-> {out}", file=sys.stderr)
    return 0 if not any(t.total(k) for k in Tally.KINDS) else 1


if __name__ == "__main__":
    sys.exit(main())
