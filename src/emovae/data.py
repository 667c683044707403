"""RAVDESS file names -> validated Utterance records (``corpus.py`` reads RAVDESS folders through it).

A RAVDESS name is ``MM-VV-EE-II-SS-RR-AA`` (modality, vocal channel, emotion, intensity, statement,
repetition, actor). Anything that does not parse is reported with its reason, never guessed at.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError

#: Emotion labels in RAVDESS code order (code 01 -> index 0). This is the order of every
#: probability vector, confusion matrix and label index in emovae.
EMOTIONS: tuple[str, ...] = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac")

_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


@dataclass(frozen=True)
class Utterance:
    """One RAVDESS clip and the labels its name carries."""

    path: str
    modality: int  # 1 audio-video, 2 video-only, 3 audio-only
    channel: str  # "speech" or "song"
    emotion: str  # one of EMOTIONS
    intensity: str  # "normal" or "strong"
    statement: int  # 1 "Kids are talking by the door", 2 "Dogs are sitting by the door"
    repetition: int  # 1 or 2
    actor: int  # 1..24
    gender: str  # "male" (odd actors) or "female" (even actors)

    @property
    def label(self) -> int:
        """Index of the emotion in EMOTIONS."""
        return EMOTIONS.index(self.emotion)


def parse_name(path: str | os.PathLike) -> Utterance:
    """Parse a RAVDESS file name into an Utterance; raise DataError saying why when it is not one."""
    p = Path(path)
    if p.suffix.lower() not in AUDIO_EXTENSIONS:
        raise DataError(f"{p.name}: extension '{p.suffix}' is not one of {', '.join(AUDIO_EXTENSIONS)}")
    m = _NAME.match(p.stem)
    if not m:
        raise DataError(f"{p.name}: not a RAVDESS name (expected 7 two-digit fields, e.g. 03-01-05-01-02-01-12)")
    modality, channel, emotion, intensity, statement, repetition, actor = (int(g) for g in m.groups())
    checks = [
        (modality in (1, 2, 3), f"modality {modality:02d} is not 01..03"),
        (modality != 2, "modality 02 is video-only and has no audio"),
        (channel in (1, 2), f"vocal channel {channel:02d} is not 01 (speech) or 02 (song)"),
        (1 <= emotion <= len(EMOTIONS), f"emotion {emotion:02d} is not 01..08"),
        (intensity in (1, 2), f"intensity {intensity:02d} is not 01 or 02"),
        (not (emotion == 1 and intensity == 2), "neutral (01) has no strong intensity (02) in RAVDESS"),
        (statement in (1, 2), f"statement {statement:02d} is not 01 or 02"),
        (repetition in (1, 2), f"repetition {repetition:02d} is not 01 or 02"),
        (1 <= actor <= 24, f"actor {actor:02d} is not 01..24"),
    ]
    for ok, why in checks:
        if not ok:
            raise DataError(f"{p.name}: {why}")
    return Utterance(
        path=str(p),
        modality=modality,
        channel="speech" if channel == 1 else "song",
        emotion=EMOTIONS[emotion - 1],
        intensity="normal" if intensity == 1 else "strong",
        statement=statement,
        repetition=repetition,
        actor=actor,
        gender="male" if actor % 2 else "female",
    )
