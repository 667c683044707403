"""Real-time recognition: a sliding window over a stream of audio chunks, with a voice-activity gate.

Feed chunks of any size with ``EmotionStream.push``; every ``hop_s`` seconds, once a full ``window_s``
window is buffered, it yields an event: the emotion of the last window, or ``silence`` when the gate finds
too little speech in it. Sources: a file (read block by block), raw PCM on stdin, or a microphone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from . import audio
from .affect import affect_text
from .errors import AudioError, ParameterError
from .features import frame_energy_db

SILENCE = "silence"


@dataclass(frozen=True)
class StreamConfig:
    """Window and gate. The gate's defaults come from RAVDESS: 99 % of its silence frames lie below
    -61 dBFS, half of its speech frames above -46 dBFS."""

    window_s: float = 2.0
    hop_s: float = 0.5
    gate_db: float = -55.0  # a 25 ms frame louder than this (dBFS) counts as active
    min_active: float = 0.25  # a window needs this fraction of active frames to count as speech

    def __post_init__(self):
        if not 0 < self.hop_s <= self.window_s:
            raise ParameterError("StreamConfig: need 0 < hop_s <= window_s")
        if not 0 <= self.min_active <= 1:
            raise ParameterError("StreamConfig: min_active must be in [0, 1]")


@dataclass
class StreamEvent:
    """The result for the window [start_s, end_s) of the stream."""

    start_s: float
    end_s: float
    emotion: str  # an emotion name, or "silence"
    probabilities: dict[str, float] | None
    active: float  # fraction of frames above the gate
    novelty: float | None = None  # the VAE's novelty score (see runtime.Prediction)
    in_domain: bool | None = None
    adapted: bool = False  # from the adapted head (a session with enough speech)
    answer: str = ""  # the emotion, "uncertain", "not speech" (``runtime.answer_of``) or "silence"
    arousal: float | None = None  # -1 calm .. 1 activated (``runtime.Prediction``); None for silence, a clip that
    # is not speech, or a model without arousal and valence heads
    valence: float | None = None  # -1 unpleasant .. 1 pleasant, likewise

    def __post_init__(self):
        self.answer = self.answer or self.emotion

    def to_dict(self) -> dict:
        d = {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3), "answer": self.answer,
             "emotion": self.emotion, "active": round(self.active, 3)}
        if self.probabilities is not None:
            d["probabilities"] = {k: round(v, 4) for k, v in self.probabilities.items()}
        if self.novelty is not None:
            d["novelty"], d["in_domain"] = round(self.novelty, 3), self.in_domain
        if self.arousal is not None:
            d["arousal"], d["valence"] = round(self.arousal, 4), round(self.valence, 4)
        if self.adapted:
            d["adapted"] = True
        return d

    def __str__(self) -> str:
        head = f"[{self.start_s:7.2f} - {self.end_s:7.2f} s] "
        if self.probabilities is None:
            return head + SILENCE
        top = sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:3]
        said = self.emotion if self.answer == self.emotion else f"{self.answer} (most probable {self.emotion})"
        return (head + f"{said:9s} {top[0][1]:.2f}   (" + ", ".join(f"{k} {v:.2f}" for k, v in top[1:]) + ")"
                + affect_text(self.arousal, self.valence))


def active_fraction(y: np.ndarray, feature_config, gate_db: float) -> float:
    """Fraction of the window's frames louder than ``gate_db`` dBFS (the energy voice-activity gate)."""
    return float(np.mean(frame_energy_db(y, feature_config) > gate_db))


class EmotionStream:
    """Stateful sliding-window recognizer. ``push(chunk)`` takes mono float samples at ``sr`` Hz and
    returns the events completed by that chunk."""

    def __init__(self, recognizer, sr: int, cfg: StreamConfig | None = None, session=None):
        self.recognizer = recognizer
        self.session = session  # a session.Session: the stream is one speaker, every speech window adapts it
        self.cfg = cfg or StreamConfig()
        self.fcfg = recognizer.feature_config
        self.rate = self.fcfg.sample_rate
        self._resampler = None
        sr = audio.check_rate(sr, "stream")
        if sr != self.rate:
            import soxr

            self._resampler = soxr.ResampleStream(sr, self.rate, 1, dtype="float32", quality="HQ")
        self.window = int(round(self.cfg.window_s * self.rate))
        self.hop = int(round(self.cfg.hop_s * self.rate))
        self._buf = np.zeros(0, np.float32)
        self._start = 0  # stream position (samples at self.rate) of _buf[0]
        self._next_end = self.window  # the next window ends here
        self._emitted_end = 0  # end of the last window reported

    def push(self, chunk: np.ndarray, last: bool = False) -> list[StreamEvent]:
        x = audio.to_mono(audio.as_float_samples(chunk, f"stream at {self._start / self.rate:.2f} s", rescale=False),
                          "stream")
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=last)
        self._buf = np.concatenate([self._buf, x])
        events = []
        while self._start + len(self._buf) >= self._next_end:
            lo = self._next_end - self.window - self._start
            events.append(self._window_event(self._buf[lo : lo + self.window], self._next_end - self.window))
            self._emitted_end = self._next_end
            self._next_end += self.hop
        keep_from = self._next_end - self.window - self._start  # samples before this are never needed again
        if keep_from > 0:
            self._buf, self._start = self._buf[keep_from:], self._start + keep_from
        return events

    def flush(self) -> list[StreamEvent]:
        """At the end of the stream: one more event for audio after the last full window (if long enough)."""
        events = self.push(np.zeros(0, np.float32), last=True) if self._resampler is not None else []
        end = self._start + len(self._buf)
        if end > self._emitted_end and end - self._start >= int(self.fcfg.min_duration * self.rate):
            events.append(self._window_event(self._buf, self._start))
        elif self._emitted_end == 0:
            raise AudioError(f"the stream held {end / self.rate:.3f} s of audio; emovae needs at least "
                             f"{self.fcfg.min_duration:.2f} s")
        return events

    def _window_event(self, y: np.ndarray, start: int) -> StreamEvent:
        t0, t1 = start / self.rate, (start + len(y)) / self.rate
        active = active_fraction(y, self.fcfg, self.cfg.gate_db)
        if active < self.cfg.min_active:
            return StreamEvent(t0, t1, SILENCE, None, active)
        try:
            p = (self.session or self.recognizer).predict_signal(y, self.rate)
        except AudioError:  # e.g. digital silence that slipped through the gate
            return StreamEvent(t0, t1, SILENCE, None, active)
        return StreamEvent(t0, t1, p.emotion, p.probabilities, active, p.novelty, p.in_domain, p.adapted, p.answer,
                           p.arousal, p.valence)


def run(recognizer, chunks: Iterable[np.ndarray], sr: int, cfg: StreamConfig | None = None,
        session=None) -> Iterator[StreamEvent]:
    """Events of a whole stream of chunks, as they complete; with ``session`` (session.Session), adapted to
    the speaker as the stream goes on."""
    s = EmotionStream(recognizer, sr, cfg, session)
    for chunk in chunks:
        yield from s.push(chunk)
    yield from s.flush()


def file_chunks(path: str | os.PathLike, block_s: float = 0.1) -> tuple[Iterator[np.ndarray], int]:
    """(chunks, sample rate) of an audio file read block by block, mono float32; a recording of any length
    (``audio.open_info`` checks the header, neither the duration nor the decoded size: no more than a block is
    held at once). A file damaged part way raises AudioError from the chunk it fails at."""
    import soundfile as sf

    p = audio.check_path(path)
    info = audio.open_info(str(p), str(p), max_seconds=None, max_decoded_bytes=None)
    block = max(1, int(block_s * info.samplerate))

    def gen():
        try:
            for b in sf.blocks(str(p), blocksize=block, dtype="float32", always_2d=True):
                yield b.mean(axis=1)
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise AudioError(f"{p}: the audio data is damaged or truncated part way ({str(exc).splitlines()[-1]}); "
                             "re-export the file") from None

    return gen(), info.samplerate


def pcm_chunks(stream=None, block_s: float = 0.1, sr: int = 16000) -> Iterator[np.ndarray]:
    """Chunks of raw signed 16-bit little-endian mono PCM read from a binary stream (stdin by default),
    e.g. ``sox in.wav -t raw -r 16000 -e signed -b 16 -c 1 - | emovae stream -``."""
    audio.check_rate(sr, "stdin PCM (--rate)")
    stream = stream or sys.stdin.buffer
    nbytes = 2 * max(1, int(block_s * sr))
    carry = b""
    while True:
        data = stream.read(nbytes)
        if not data:
            break
        data = carry + data
        usable = len(data) - len(data) % 2
        carry = data[usable:]
        yield np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0


def mic_chunks(sr: int = 16000, block_s: float = 0.1) -> Iterator[np.ndarray]:  # pragma: no cover - needs a mic
    """Chunks from the default microphone (the ``mic`` extra: sounddevice)."""
    import queue

    from .errors import require

    sd = require("sounddevice", "mic")
    q: queue.Queue = queue.Queue()
    with sd.InputStream(samplerate=sr, channels=1, dtype="float32", blocksize=int(block_s * sr),
                        callback=lambda data, frames, t, status: q.put(data[:, 0].copy())):
        while True:
            yield q.get()
