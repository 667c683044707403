"""Every item of the bad-input corpus (tests/badinputs.py) through the four interfaces: CLI, Python API, stream and
HTTP. Bad items end in an emovae error naming the input (CLI: exit code 2 or 1 and one line, never a traceback;
HTTP: a 4xx with a JSON message); valid but tricky items (integer PCM, 48 kHz, stereo in either order) score as
their plain float twin. Plus a bounded fuzz test of the decode path under a memory limit."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from emovae import audio, stream
from emovae.errors import EmovaeError
from emovae.runtime import load_pretrained

from .badinputs import arrays, write_files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_files(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def rec():
    return load_pretrained(backend="onnx")


def test_cli_never_tracebacks_and_names_the_input(corpus, capsys):
    from emovae.cli import main

    for name, path, expect in corpus:
        rc = main(["predict", "--json", str(path)])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err, name
        if expect == "ok":
            assert rc == 0 and '"emotion"' in out, (name, err)
        else:
            assert rc in (1, 2) and out == "", (name, out)
            assert name.split(".")[0] in err and err.count("\n") == 1, (name, err)


def test_cli_batch_goes_on_past_bad_items(corpus, capsys):
    from emovae.cli import main

    paths = [str(p) for _, p, _ in corpus]
    rc = main(["predict", "--json", *paths])
    out, err = capsys.readouterr()
    n_ok = sum(e == "ok" for _, _, e in corpus)
    assert rc == 1 and out.count('"emotion"') == n_ok and err.count("emovae: error") == len(paths) - n_ok
    rc = main(["predict", "--speaker-from", "actor", *paths])  # none of these names has a RAVDESS actor
    out, err = capsys.readouterr()
    assert rc == 1 and "Traceback" not in err and err.count("skipped") == len(paths)


def test_api_files(corpus, rec):
    for name, path, expect in corpus:
        if expect == "ok":
            p = rec.predict_file(path)
            assert abs(sum(p.probabilities.values()) - 1) < 1e-4, name
        else:
            with pytest.raises(EmovaeError) as exc:
                rec.predict_file(path)
            assert name.split(".")[0] in str(exc.value), (name, str(exc.value))


def test_api_arrays_refused_or_scored_as_their_float_twin(rec):
    ref = rec.predict_proba(*arrays()[0][1:3])
    for name, y, sr, expect in arrays():
        if expect == "ok":
            np.testing.assert_allclose(rec.predict_proba(y, sr), ref, atol=2e-3, err_msg=name)
        else:
            with pytest.raises(EmovaeError):
                rec.predict_proba(y, sr)


def test_api_rejects_paths_of_the_wrong_type(rec):
    for bad in (None, 123, b"\x00", ["a.wav"]):
        with pytest.raises(EmovaeError, match="path"):
            rec.predict_file(bad)


def test_stream_files_and_chunks(corpus, rec):
    for name, path, expect in corpus:
        if name in ("one_hour.wav", "silent.wav"):  # a stream reads any length, and silence is an answer
            continue
        if expect == "ok":
            chunks, sr = stream.file_chunks(path)
            assert list(stream.run(rec, chunks, sr)), name
        else:
            with pytest.raises(EmovaeError):
                chunks, sr = stream.file_chunks(path)
                list(stream.run(rec, chunks, sr))
    y = arrays()[0][1]
    with pytest.raises(EmovaeError, match="NaN"):  # a NaN window is an error, not "silence"
        list(stream.run(rec, [y, np.full(4000, np.nan, np.float32), y, y], 16000))
    with pytest.raises(EmovaeError, match="at least"):  # too short to say anything: said, not silent
        list(stream.run(rec, [y[:1000]], 16000))
    with pytest.raises(EmovaeError, match="sample rate"):
        list(stream.run(rec, [y], 0))


def test_http(corpus, rec):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from emovae.serve import create_app

    client = TestClient(create_app(rec), raise_server_exceptions=False)
    for name, path, expect in corpus:
        if not path.is_file():
            continue
        r = client.post("/v1/predict?session=bad-inputs", content=path.read_bytes())
        assert r.status_code < 500 and "Traceback" not in r.text, (name, r.status_code, r.text)
        if expect == "ok":
            assert r.status_code == 200, (name, r.text)
        else:
            assert 400 <= r.status_code < 500 and r.json().get("error"), (name, r.text)


FUZZ = textwrap.dedent("""
    import io, resource, sys
    import numpy as np, soundfile as sf
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # 2 GiB of address space for the whole process
    from emovae import audio
    from emovae.errors import AudioError
    rng = np.random.default_rng(int(sys.argv[1]))
    t = np.arange(16000) / 16000
    seeds = []
    for fmt in ("WAV", "FLAC"):
        buf = io.BytesIO(); sf.write(buf, (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000, format=fmt)
        seeds.append(buf.getvalue())
    kinds = {"ok": 0, "refused": 0}
    for i in range(int(sys.argv[2])):
        data = bytearray(seeds[i % 2])
        if i % 5 == 4:
            data = bytearray(rng.bytes(int(rng.integers(0, 4000))))
        else:
            for _ in range(int(rng.integers(1, 8))):
                pos = int(rng.integers(0, 64 if i % 2 == 0 else len(data)))  # headers first, then anywhere
                if pos < len(data):
                    data[pos] = int(rng.integers(0, 256))
        try:
            y = audio.load_bytes(bytes(data), 16000, name="fuzz", min_duration=0.25)
            assert y.dtype == np.float32 and y.ndim == 1 and np.all(np.isfinite(y)), "bad output"
            kinds["ok"] += 1
        except AudioError:
            kinds["refused"] += 1
    print(kinds)
""")


def test_decode_fuzz_under_a_memory_limit():
    r = subprocess.run([sys.executable, "-c", FUZZ, "7", "300"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    counts = eval(r.stdout.strip().splitlines()[-1])  # {"ok": n, "refused": m}
    assert counts["ok"] + counts["refused"] == 300 and counts["refused"] > 0
