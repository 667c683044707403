"""Shared test fixtures: synthetic audio, one tiny model trained once per run, and the real-data folder.

The default run (``pytest``, which deselects ``slow``) trains one model: ``tiny_model_dir``, by the CLI, on a small
synthetic RAVDESS-named tree, without a voice student (``--voice 0``). Tests that need a fitted model reuse it
(``tiny_model``: the same model loaded as an estimator); tests that need other fits keep them tiny.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

# one thread for BLAS/OpenMP and torch: tiny matrices, and more threads than cores stall on a busy machine
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - the core alone is tested without the train extra
    torch = None

SR = 16000
REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ravdess-speech"

#: the tiny model's feature config: no voice student, 13 MFCCs (the CLI arguments below give the same)
TINY_FEATURES = {"voice": 0, "n_mfcc": 13}
TRAIN_ACTORS = (1, 2, 3, 4)  # the tiny model's speakers
NEW_ACTORS = (5, 6)  # speakers the tiny model has never heard
TINY_EMOTIONS = (1, 3, 5, 8)  # neutral, happy, angry, surprised
TINY_SPEEDS = (0.9, 1.1)


def tone(freq: float, seconds: float = 1.0, sr: int = SR, amp: float = 0.5, harmonics: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = sum(amp / k * np.sin(2 * np.pi * freq * k * t) for k in range(1, harmonics + 1))
    return np.asarray(y, dtype=np.float32)


def voice_like(f0: float, seconds: float, sr: int = SR, seed: int = 0, formant: float = 800.0) -> np.ndarray:
    """A crude vowel: a harmonic-rich pulse train at f0 with a vibrato, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / sr
    y = sum(np.sin(k * phase) / k * np.exp(-((k * f0 - formant) / 1500) ** 2) for k in range(1, 30))
    y = y * np.hanning(len(t)) ** 0.2 + 0.003 * rng.standard_normal(len(t))
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


def read(path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    y, sr = sf.read(str(path), dtype="float32")
    return y, sr


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real RAVDESS data not found at {REAL_DATA} (it lives in ../shared beside the repo)")
    return REAL_DATA


def write_ravdess_tree(root: Path, actors=(1, 2, 3, 4), emotions=range(1, 9), seconds: float = 0.8,
                       sr: int = SR, per_emotion: int = 1) -> list[Path]:
    """Write a small tree of synthetic clips named as RAVDESS (Actor_XX/03-01-EE-II-SS-RR-AA.wav).

    Each emotion gets its own pitch, formant and loudness so that a classifier has something to learn.
    """
    import soundfile as sf

    paths = []
    for a in actors:
        d = root / f"Actor_{a:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for e in emotions:
            for r in range(per_emotion):
                y = voice_like(90 + 25 * e + 10 * (a % 2), seconds, sr, seed=100 * a + 10 * e + r,
                               formant=500 + 150 * e) * (0.3 + 0.08 * e)
                p = d / f"03-01-{e:02d}-01-{(r % 2) + 1:02d}-{(r // 2) % 2 + 1:02d}-{a:02d}.wav"
                sf.write(p, y, sr)
                paths.append(p)
    return paths


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> dict[str, Path]:
    """Synthetic RAVDESS trees: ``train`` (TRAIN_ACTORS x TINY_EMOTIONS x 2 clips), ``new`` (NEW_ACTORS, the same
    emotions, 1 clip each) and a feature ``cache`` folder shared by the CLI and the tests."""
    root = tmp_path_factory.mktemp("synthetic")
    write_ravdess_tree(root / "train", actors=TRAIN_ACTORS, emotions=TINY_EMOTIONS, per_emotion=2)
    write_ravdess_tree(root / "new", actors=NEW_ACTORS, emotions=TINY_EMOTIONS)
    return {"train": root / "train", "new": root / "new", "cache": root / "cache"}


def tiny_train_args(data: Path, out: Path, cache: Path | None = None) -> list[str]:
    """CLI arguments that train a tiny model without a voice student (seconds, not minutes)."""
    return ["-q", "train", "--data", str(data), "--out", str(out), "--jobs", "1", "--threads", "1",
            "--voice", "0", "--n-mfcc", "13", "--latent-dim", "4", "--epochs", "6",
            "--speed-perturb", *map(str, TINY_SPEEDS),
            *(["--cache-dir", str(cache)] if cache else ["--no-cache"])]


@pytest.fixture(scope="session")
def tiny_model_dir(synthetic, tmp_path_factory) -> Path:
    """A model folder (model.json, model.onnx holding the weights; no voice student) trained by the CLI on
    ``synthetic["train"]``, once per run."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from emovae.cli import main

    out = tmp_path_factory.mktemp("tiny") / "model"
    assert main(tiny_train_args(synthetic["train"], out, synthetic["cache"])) == 0
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """The tiny model as an estimator (weights read back from model.onnx). Shared: copy it before changing it."""
    from emovae.train.estimator import EmotionRecognizer

    return EmotionRecognizer.load(tiny_model_dir)


def _table(folder: Path, cache: Path, speeds=()):
    from emovae.config import FeatureConfig
    from emovae.extraction import extract_dataset

    table, skipped = extract_dataset(folder, FeatureConfig(**TINY_FEATURES), cache_dir=cache, n_jobs=1,
                                     progress=False)
    assert not skipped
    return table.augment(speeds, cache_dir=cache, n_jobs=1, progress=False)


@pytest.fixture(scope="session")
def train_table(synthetic, tiny_model_dir):
    """The tiny model's training clips (and their speed copies), from the CLI's feature cache."""
    return _table(synthetic["train"], synthetic["cache"], TINY_SPEEDS)


@pytest.fixture(scope="session")
def new_table(synthetic):
    """Clips of speakers the tiny model has never heard, with its feature config."""
    return _table(synthetic["new"], synthetic["cache"])


def encode(y: np.ndarray, sr: int = SR, fmt: str = "WAV") -> bytes:
    """A signal as the bytes of an audio file (WAV by default), as an upload carries it."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def recognizer(tiny_model_dir):
    """The shared tiny model as a runtime Recognizer (onnxruntime)."""
    from emovae.runtime import Recognizer

    return Recognizer.load(tiny_model_dir)


@contextlib.contextmanager
def live_server(app, header_timeout_s: float | None = None):
    """uvicorn in a background thread on a free 127.0.0.1 port, logging through the root logger (so that
    caplog sees every record, tracebacks included); yields (host, port)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    kwargs = {}
    if header_timeout_s:
        from emovae.serve import header_timeout_protocol

        kwargs["http"] = header_timeout_protocol(header_timeout_s)
    srv = uvicorn.Server(uvicorn.Config(app, log_level="info", lifespan="off", log_config=None, **kwargs))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 20 s")
        time.sleep(0.02)
    try:
        yield sock.getsockname()
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()
