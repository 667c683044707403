"""Errors a user can cause. Each message names the file or value and the fix."""


class EmovaeError(Exception):
    """Base class for every error emovae raises on purpose."""


class AudioError(EmovaeError):
    """A file or signal that cannot be used as speech audio (missing, unreadable, empty, too short, silent)."""


class AudioWarning(UserWarning):
    """Audio that was used, but changed on the way: float samples beyond full scale, scaled to peak 1."""


class DataError(EmovaeError):
    """A dataset problem: malformed RAVDESS name, empty folder, too few classes or speakers."""


class ParameterError(EmovaeError):
    """An invalid configuration value or argument."""


class ModelFormatError(EmovaeError):
    """A model directory or file that is missing, incomplete or incompatible with this version."""


class MissingDependencyError(EmovaeError):
    """An optional part was used without its extra installed."""


def require(module: str, extra: str):
    """Import an optional dependency or raise a clear error naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"this feature needs '{module}', which is not installed: pip install 'emovae[{extra}]'"
        ) from exc
