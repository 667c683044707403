"""Command line: ``emovae <command> ...``; ``main(argv) -> exit code``. A thin shell over the package's functions.

Each handler imports what it needs, so ``emovae --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import EmovaeError


def _err(msg: str) -> None:
    print(f"emovae: error: {msg}", file=sys.stderr)


def _feature_config(args: argparse.Namespace):
    from .config import FeatureConfig

    kw = {}
    for name in ("sample_rate", "n_mfcc", "pitch_method"):
        value = getattr(args, name, None)
        if value is not None:
            kw[name] = value
    return FeatureConfig(**kw)


def _cache_dir(args: argparse.Namespace):
    from .extraction import default_cache_dir

    if getattr(args, "no_cache", False):
        return None
    return Path(args.cache_dir) if getattr(args, "cache_dir", None) else default_cache_dir()


def _report_skipped(skipped: list[tuple[str, str]]) -> None:
    for path, why in skipped:
        print(f"skipped: {why}" if Path(path).name in why else f"skipped: {path}: {why}", file=sys.stderr)


# ------------------------------------------------------------------------------------------- commands
def cmd_features(args: argparse.Namespace) -> int:
    from .extraction import emotion_counts, extract_dataset

    table, skipped = extract_dataset(args.data, _feature_config(args), cache_dir=_cache_dir(args),
                                     n_jobs=args.jobs, progress=not args.quiet)
    _report_skipped(skipped)
    npz, csv_path = table.save(args.out)
    actors = sorted(set(table.actors.tolist()))
    print(f"{len(table)} clips from {len(actors)} actors, {table.stats.shape[1]} statistics and "
          f"{len(table.frame_names)} frame features per clip -> {npz} (+ {csv_path.name})")
    print("per emotion: " + ", ".join(f"{k} {v}" for k, v in emotion_counts(table).items()))
    if skipped:
        print(f"{len(skipped)} file(s) skipped (see messages above)")
    return 0


def _add_feature_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("features")
    g.add_argument("--sample-rate", type=int, dest="sample_rate", help="analysis rate in Hz (default 16000)")
    g.add_argument("--n-mfcc", type=int, dest="n_mfcc", help="number of MFCCs (default 40)")
    g.add_argument("--pitch", choices=["yin", "max"], dest="pitch_method",
                   help="yin: F0 over voiced frames (default); max: highest spectral peak per frame (source design)")
    g.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    g.add_argument("--cache-dir", help="feature cache folder (default $EMOVAE_CACHE_DIR or ~/.cache/emovae)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="emovae", description="Speech emotion recognition with a VAE.")
    parser.add_argument("--version", action="version", version=f"emovae {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("features", help="extract features of a RAVDESS folder into a table (.npz + .csv)")
    p.add_argument("--data", required=True, help="folder with RAVDESS-named .wav/.flac files (searched recursively)")
    p.add_argument("--out", required=True, help="output .npz (a .csv index is written beside it)")
    _add_feature_args(p)
    p.set_defaults(func=cmd_features)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except EmovaeError as exc:
        _err(str(exc))
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
