"""The bad-input corpus: files and arrays a hostile or careless user gives emovae, each with what must happen.

``write_files(folder)`` writes the files and returns [(name, path, expect)]; ``arrays()`` returns
[(name, signal, sr, expect)]. ``expect`` is "error" (an emovae error naming the input, never a traceback) or
"ok" (a valid answer: e.g. integer PCM, which must score as its float twin). Run it through every interface with
tests/test_bad_inputs.py; run this file to write the corpus somewhere: ``python tests/badinputs.py DIR``.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import numpy as np

SR = 16000


def _speechlike(seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(140 * (1 + 0.05 * np.sin(2 * np.pi * 4 * t))) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


def _wav_header(n_bytes: int, sr: int, channels: int = 1, bits: int = 16) -> bytes:
    """A canonical PCM WAV header for ``n_bytes`` of sample data (any rate, even absurd ones)."""
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + n_bytes) + b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels,
            sr, sr * block, block, bits) + b"data" + struct.pack("<I", n_bytes))


def write_files(folder: str | os.PathLike) -> list[tuple[str, Path, str]]:
    """Write the bad (and the tricky but valid) files under ``folder``: [(name, path, expect)]."""
    import soundfile as sf

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    y = _speechlike(1.0)
    items: list[tuple[str, Path, str]] = []

    def add(name: str, expect: str, write) -> None:
        p = d / name
        write(p)
        items.append((name, p, expect))

    add("good.wav", "ok", lambda p: sf.write(p, y, SR))
    add("good_int32_48k.wav", "ok", lambda p: sf.write(p, _speechlike(1.0, 48000), 48000, subtype="PCM_32"))
    add("stereo.flac", "ok", lambda p: sf.write(p, np.stack([y, y], 1), SR))
    add("empty.wav", "error", lambda p: p.write_bytes(b""))
    add("text.wav", "error", lambda p: p.write_text("this is not audio\n" * 20))
    add("random.flac", "error", lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)))
    add("header_only.wav", "error", lambda p: p.write_bytes(_wav_header(0, SR)))
    add("rate_1hz.wav", "error", lambda p: p.write_bytes(_wav_header(2 * SR, 1) + (y * 32767).astype("<i2").tobytes()))
    add("rate_huge.wav", "error", lambda p: p.write_bytes(_wav_header(2 * SR, 10**9) +
                                                          (y * 32767).astype("<i2").tobytes()))
    add("silent.wav", "error", lambda p: sf.write(p, np.zeros(SR, np.float32), SR))
    add("short.wav", "error", lambda p: sf.write(p, y[: SR // 10], SR))
    add("nan_float.wav", "error", lambda p: sf.write(p, np.where(np.arange(SR) % 100 == 0, np.nan, y)
                                                    .astype(np.float32), SR, subtype="FLOAT"))
    add("unscaled_float.wav", "error", lambda p: sf.write(p, y * 30000, SR, subtype="FLOAT"))
    add("tess_float_over_full_scale.wav", "ok", lambda p: sf.write(p, y / np.max(np.abs(y)) * 2.27, SR,
                                                                    subtype="FLOAT"))  # TESS's own float WAVs
    add("many_channels.wav", "error", lambda p: sf.write(p, np.tile(y[:, None], (1, 40)), SR))

    def truncated(p: Path) -> None:
        full = d / "_full.flac"
        sf.write(full, np.tile(y, 3), SR)
        p.write_bytes(full.read_bytes()[:3000])
        full.unlink()

    add("truncated.flac", "error", truncated)

    def one_hour(p: Path) -> None:  # a sparse file: a valid header and an hour of (zero) samples at 8 kHz
        n = 3600 * 8000 * 2
        with open(p, "wb") as fh:
            fh.write(_wav_header(n, 8000))
            fh.truncate(44 + n)

    add("one_hour.wav", "error", one_hour)
    add("a_folder.wav", "error", lambda p: p.mkdir())
    add("missing.wav", "error", lambda p: None)

    def loop(p: Path) -> None:
        other = d / "loop_b.wav"
        for a, b in ((p, other), (other, p)):
            if not a.is_symlink():
                a.symlink_to(b)

    add("loop_a.wav", "error", loop)
    return items


def arrays() -> list[tuple[str, object, object, str]]:
    """Signals handed to the Python API: [(name, signal, sr, expect)]."""
    y = _speechlike(1.0)
    pcm16 = np.round(y * 32767).astype(np.int16)
    return [
        ("float", y, SR, "ok"),
        ("int16_pcm", pcm16, SR, "ok"),
        ("int32_pcm", pcm16.astype(np.int32) << 16, SR, "ok"),
        ("channels_first", np.stack([y, y]), SR, "ok"),
        ("channels_last", np.stack([y, y], 1), SR, "ok"),
        ("bool", y > 0, SR, "error"),
        ("object", np.array([object()] * SR), SR, "error"),
        ("strings", np.array(["0.1"] * SR), SR, "error"),
        ("complex", y.astype(np.complex64), SR, "error"),
        ("unscaled_float", y * 32767, SR, "error"),
        ("nan", np.where(np.arange(SR) == 5, np.nan, y), SR, "error"),
        ("inf", np.where(np.arange(SR) == 5, np.inf, y), SR, "error"),
        ("three_dims", y.reshape(1, 1, -1), SR, "error"),
        ("too_many_channels", np.tile(y[:, None], (1, 40)), SR, "error"),
        ("empty", np.zeros(0, np.float32), SR, "error"),
        ("short", y[:1000], SR, "error"),
        ("silent", np.zeros(SR, np.float32), SR, "error"),
        ("sr_zero", y, 0, "error"),
        ("sr_negative", y, -16000, "error"),
        ("sr_none", y, None, "error"),
        ("sr_string", y, "16000", "error"),
        ("sr_nan", y, float("nan"), "error"),
        ("sr_inf", y, float("inf"), "error"),
        ("sr_bool", y, True, "error"),
        ("sr_1hz", y, 1, "error"),
        ("float16", y.astype(np.float16), SR, "ok"),
        ("int16_values_in_a_list", pcm16.tolist(), SR, "error"),  # no sample width: refused with the cast to make
        ("int16_values_in_a_tuple", tuple(pcm16.tolist()), SR, "error"),
        ("int64_from_a_list", np.array(pcm16.tolist()), SR, "error"),
        ("file_bytes", b"RIFF\x00\x00\x00\x00WAVEfmt ", SR, "error"),
    ] + _tensors(y)


def _tensors(y: np.ndarray) -> list[tuple[str, object, object, str]]:
    """torch tensors as a notebook holds them (with requires_grad, half precision), when torch is installed."""
    try:
        import torch
    except ImportError:  # pragma: no cover - the core alone is tested without the train extra
        return []
    t = torch.tensor(y)
    return [("torch_requires_grad", t.clone().requires_grad_(True), SR, "ok"), ("torch_float16", t.half(), SR, "ok"),
            ("torch_bfloat16", t.to(torch.bfloat16), SR, "ok"),
            ("torch_int64", torch.tensor(np.round(y * 32767).astype(np.int64)), SR, "error")]


if __name__ == "__main__":  # pragma: no cover
    for name, path, expect in write_files(sys.argv[1] if len(sys.argv) > 1 else "bad-inputs"):
        print(f"{expect:5s} {path}")
