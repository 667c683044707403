"""emovae: speech emotion recognition built around a Variational Autoencoder.

Light to import: heavy parts (torch, matplotlib, onnxruntime) load only when used.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("emovae")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

_LAZY = {
    "EMOTIONS": ("emovae.data", "EMOTIONS"),
    "FeatureConfig": ("emovae.config", "FeatureConfig"),
    "EmovaeError": ("emovae.errors", "EmovaeError"),
    "extract": ("emovae.features", "extract"),
    "load_audio": ("emovae.audio", "load"),
    "load_pretrained": ("emovae.runtime", "load_pretrained"),
    "Recognizer": ("emovae.runtime", "Recognizer"),
    "Prediction": ("emovae.runtime", "Prediction"),
    "Session": ("emovae.session", "Session"),
    "SessionConfig": ("emovae.speaker", "SessionConfig"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'emovae' has no attribute {name!r}")
