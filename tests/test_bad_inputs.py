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

from emovae import stream
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
            # bfloat16 keeps 8 bits of mantissa: its twin differs by that rounding of the signal
            np.testing.assert_allclose(rec.predict_proba(y, sr), ref, atol=2e-2 if "bfloat16" in name else 2e-3,
                                       err_msg=name)
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


MODEL_FUZZ = textwrap.dedent("""
    import json, random, resource, shutil, sys
    from pathlib import Path
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # 3 GiB of address space: a huge allocation fails
    import numpy as np
    from emovae.errors import ModelFormatError
    from emovae.runtime import Recognizer
    src, work, seed, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    d = work / "model"
    shutil.copytree(src, d)
    base = json.loads((src / "model.json").read_text())
    t = np.arange(16000) / 16000
    clip = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)

    def leaves(x, path=()):
        yield path
        if isinstance(x, dict):
            for k, v in x.items():
                yield from leaves(v, path + (k,))
        elif isinstance(x, list) and x:
            for i in {0, len(x) - 1}:
                yield from leaves(x[i], path + (i,))

    paths = [p for p in leaves(base) if p and p[0] != "history"]  # the training curves: read by nothing
    HOSTILE = [0, -1, 1, 3, 10**9, 10**10, -10**9, 10**40, 1e308, -1e308, 0.5, -0.5, 1e-300, True, False, None, "",
               "x", "16000", [], {}, [1, 2, 3], [[1, 2]] * 3, {"a": 1}, ["a"] * 5, "a" * 10000]

    def mutate(value):
        r = rng.random()
        if isinstance(value, bool) or r < 0.45:
            return rng.choice(HOSTILE)
        if isinstance(value, (int, float)):
            return rng.choice([value * 1000, value * 10**6, -value, value + 1, value - 1, value // 2 if
                               isinstance(value, int) else value / 2, value * 1e300, 0])
        if isinstance(value, list):
            return rng.choice([value[: len(value) // 2], value * 3, value[:1], value[1:], value[::-1],
                               value + [value[-1] if value else 0], [str(v) for v in value]])
        if isinstance(value, dict):
            k = rng.choice(list(value) or ["x"])
            return rng.choice([{kk: vv for kk, vv in value.items() if kk != k}, dict(value, unknown_key=1),
                               dict(value, **{k: rng.choice(HOSTILE)})])
        return rng.choice(HOSTILE)

    def text_case(i):
        good = json.dumps(base)
        kind = i % 4
        if kind == 0:
            return good[: rng.randrange(len(good))]  # truncated
        if kind == 1:
            key = rng.choice(['"seq_len": ', '"n_fft": ', '"latent_dim": ', '"n_mels": ', '"hop_length": '])
            num = rng.choice(["9" * 5000, "1e999", "-1e999", "NaN", "Infinity", "1" + "0" * 300])
            return good.replace(key, key + num + ", \\"_x\\": ", 1)  # a huge number for the key
        if kind == 2:
            depth = rng.choice([100, 1000, 100000])
            key = rng.choice(['"classes": ', '"feature_config": ', '"speaker_prior": '])
            return good.replace(key, key + "[" * depth + "]" * depth + ', "_y": ', 1)
        b = bytearray(good.encode())
        for _ in range(rng.randrange(1, 10)):
            b[rng.randrange(len(b))] = rng.randrange(32, 127)
        return b.decode("latin-1")

    counts = {"ok": 0, "refused": 0}
    failures = []
    for i in range(n):
        meta = json.loads(json.dumps(base))
        if i % 5 == 4:
            text, what = text_case(i // 5), f"text mutation {i // 5 % 4}"
        else:
            what = []
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                path = rng.choice(paths)
                parent = meta
                try:
                    for k in path[:-1]:
                        parent = parent[k]
                    if rng.random() < 0.1 and isinstance(parent, dict):
                        parent.pop(path[-1], None)
                        what.append(f"{path} deleted")
                    else:
                        parent[path[-1]] = mutate(parent[path[-1]])
                        what.append(f"{path} = {repr(parent[path[-1]])[:60]}")
                except (KeyError, IndexError, TypeError):  # an earlier mutation changed the parent
                    pass
            text = json.dumps(meta)
        (d / "model.json").write_text(text)
        backend = "torch" if i % 7 == 3 else "onnx"
        try:
            rec = Recognizer.load(d, backend=backend)
        except ModelFormatError:
            counts["refused"] += 1
            continue
        except BaseException as exc:
            failures.append(f"load ({backend}) {what}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        try:
            p = rec.predict_proba(clip, 16000)
            assert p.shape == (len(rec.classes),) and np.all(np.isfinite(p)), "bad probabilities"
            counts["ok"] += 1
        except BaseException as exc:
            failures.append(f"predict ({backend}) {what}: {type(exc).__name__}: {str(exc)[:200]}")
    print(json.dumps({"counts": counts, "failures": failures}))
""")


def test_model_json_fuzz_loads_or_is_refused_under_a_memory_limit(tiny_model_dir, tmp_path):
    """Mutated model.json fields (hostile values, huge numbers, deep nesting, truncation, flipped bytes) of a copy
    of the tiny model: each load works and scores a clip, or raises ModelFormatError; never another exception,
    never an allocation past 3 GiB."""
    import json

    r = subprocess.run([sys.executable, "-c", MODEL_FUZZ, str(tiny_model_dir), str(tmp_path), "11", "400"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert not result["failures"], "\n".join(result["failures"][:20])
    counts = result["counts"]
    print("model.json fuzz:", counts)
    assert counts["ok"] + counts["refused"] == 400 and counts["ok"] > 20 and counts["refused"] > 100, counts


def test_a_2gb_wav_of_16_channels_at_384khz_is_refused_up_front_by_cli_api_and_stream(tmp_path, rec, capsys):
    """Refused from its header (no 3.7 GiB request, no "damaged" blame), naming the file, the size and the option;
    the stream reads it block by block, so opening it holds no more than a block."""
    import resource
    import struct

    p = tmp_path / "huge.wav"
    n = 163 * 384_000 * 16 * 2
    with open(p, "wb") as fh:  # sparse: 2 GB declared, nothing written
        fh.write(b"RIFF" + struct.pack("<I", 36 + n) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 16, 384_000,
                 384_000 * 32, 32, 16) + b"data" + struct.pack("<I", n))
        fh.truncate(44 + n)
    from emovae.cli import main

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["predict", str(p)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "huge.wav: 163.0 s of 16 channel(s) at 384000 Hz" in err, err
    assert "3.73 GiB decoded, over the 128 MiB bound" in err and "--max-decoded-mb 3821" in err
    assert "damaged" not in err and "Traceback" not in err
    with pytest.raises(EmovaeError, match="huge.wav: .* over the 128 MiB bound"):
        rec.predict_file(p)
    chunks, sr = stream.file_chunks(p)
    assert sr == 384_000 and next(chunks).shape == (38_400,)  # one 0.1 s block, averaged over the 16 channels
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing near 3.7 GiB


def test_cli_max_decoded_mb_raises_or_lowers_the_bound(tmp_path, capsys):
    import soundfile as sf

    from emovae.cli import main

    y = arrays()[0][1]
    sf.write(tmp_path / "stereo48k.wav", np.stack([y, y], 1).repeat(3, axis=0), 48000)  # 1 s: 384 000 bytes
    assert main(["predict", "--max-decoded-mb", "0.25", str(tmp_path / "stereo48k.wav")]) == 1
    err = capsys.readouterr().err
    assert "stereo48k.wav: 1.0 s of 2 channel(s) at 48000 Hz would take 375 KiB decoded, over the 256 KiB" in err
    assert "--max-decoded-mb 1" in err
    assert main(["predict", "--max-decoded-mb", "0.5", str(tmp_path / "stereo48k.wav")]) == 0
    with pytest.raises(SystemExit):  # argparse: the bound must be > 0
        main(["predict", "--max-decoded-mb", "0", str(tmp_path / "stereo48k.wav")])
    assert "--max-decoded-mb: 0 is out of range" in capsys.readouterr().err


def test_cli_shows_an_audio_warning_as_one_line(corpus, capsys):
    from emovae.cli import main

    path = next(p for name, p, _ in corpus if name.startswith("tess_float"))
    assert main(["predict", str(path)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"emovae: warning: {path}: float samples reach 2.27"), err


def test_cli_names_the_damaged_model_folder_and_field_never_an_internal_error(tmp_path, capsys):
    import json
    import shutil

    from emovae.cli import main
    from emovae.modelfile import PRETRAINED_DIR

    y = arrays()[0][1]
    import soundfile as sf

    sf.write(tmp_path / "clip.wav", y, 16000)
    for name, change, field in (("n_fft", lambda m: m["feature_config"].update(n_fft=10**9), "feature_config.n_fft"),
                                ("seq_len", lambda m: m["vae_config"].update(seq_len=10**10), "vae_config.seq_len"),
                                ("classes", lambda m: m.update(classes=m["classes"][:3]), "classes"),
                                ("min_duration", lambda m: m["feature_config"].update(min_duration=-1),
                                 "feature_config.min_duration")):
        d = tmp_path / name
        shutil.copytree(PRETRAINED_DIR, d)
        meta = json.loads((d / "model.json").read_text())
        change(meta)
        (d / "model.json").write_text(json.dumps(meta))
        assert main(["predict", "--model", str(d), str(tmp_path / "clip.wav")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(d) in err and field in err and "internal error" not in err, err


def test_cli_stream_warns_once_for_a_file_beyond_full_scale(tmp_path, capsys):
    import soundfile as sf

    from emovae.cli import main

    y = np.tile(arrays()[0][1], 4)
    sf.write(tmp_path / "loud.wav", y / np.max(np.abs(y)) * 2.27, 16000, subtype="FLOAT")
    assert main(["stream", "--json", "--hop", "0.5", str(tmp_path / "loud.wav")]) == 0
    out, err = capsys.readouterr()
    assert out.count('"answer"') >= 4 and err.count("emovae: warning:") == 1 and "beyond full scale" in err, err


def test_one_decoded_size_bound_for_cli_api_stream_and_service():
    """The bound has one default (audio.MAX_DECODED_BYTES): audio.load, the Recognizer, the stream's chunks, the
    service's ServeConfig and both CLI commands that take --max-decoded-mb."""
    import inspect

    from emovae import audio
    from emovae.cli import build_parser
    from emovae.runtime import Recognizer
    from emovae.serve import ServeConfig

    bound = audio.MAX_DECODED_BYTES
    assert bound == 128 * 1024 * 1024 and ServeConfig().max_decoded_bytes == bound
    for fn in (audio.load, audio.load_bytes, audio.as_float_samples, audio.open_info, Recognizer.load):
        assert inspect.signature(fn).parameters["max_decoded_bytes"].default == bound, fn
    parser = build_parser()
    for argv in (["predict", "x.wav"], ["serve"]):
        assert parser.parse_args(argv).max_decoded_mb is None  # None: the one default, filled in by the command
    with pytest.raises(EmovaeError, match="stream at 0.00 s: an array of 40 samples .* over the 100 bytes"):
        audio.as_float_samples(np.zeros(40, np.float32), "stream at 0.00 s", max_decoded_bytes=100, rescale=False)


def test_the_service_decodes_within_its_own_bound(monkeypatch, rec):
    """An operator's --max-decoded-mb reaches the decoder too, not only the header probe (else a bound raised
    above audio's default would still refuse at decode)."""
    from emovae import audio
    from emovae.serve import ServeConfig
    from emovae.serve import predict as serve_predict

    from .conftest import encode

    seen, real = {}, audio.load_bytes

    def spy(data, sr, **kw):
        seen.update(kw)
        return real(data, sr, **kw)

    monkeypatch.setattr(audio, "load_bytes", spy)
    y = serve_predict.decode(rec.feature_config.sample_rate, encode(arrays()[0][1]), "clip",
                             ServeConfig(max_decoded_bytes=512 * 1024 * 1024))
    assert y.size == 16000 and seen["max_decoded_bytes"] == 512 * 1024 * 1024
