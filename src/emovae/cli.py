"""Command line: ``emovae <command> ...``; ``main(argv) -> exit code``. A thin shell over the package's functions.

Each handler imports what it needs, so ``emovae --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import DataError, EmovaeError, ParameterError


def _err(msg: str) -> None:
    print(f"emovae: error: {msg}", file=sys.stderr)


def _warning_printer():
    """A ``warnings.showwarning`` that prints emovae's own warnings (audio scaled to full scale, say) as one
    ``emovae: warning:`` line on stderr, never a source line, once per input they name (a stream's windows would
    repeat it every hop); other warnings as Python shows them."""
    import warnings

    from .errors import AudioWarning

    named: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not issubclass(category, AudioWarning):
            sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
            return
        name = str(message).split(": ", 1)[0]
        if name not in named:
            named.add(name)
            print(f"emovae: warning: {message}", file=sys.stderr)

    return show


def _number(kind, lo=None, hi=None, lo_open: bool = False):
    """An argparse type: ``kind`` (int or float), finite, within [lo, hi] (lo excluded with ``lo_open``)."""
    import math

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value) or (lo is not None and (value <= lo if lo_open else value < lo)) or (
                hi is not None and value > hi):
            span = f"{'>' if lo_open else '>='} {lo:g}" if hi is None else f"in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {span}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


POSITIVE_INT, POSITIVE = _number(int, 1), _number(float, 0, lo_open=True)
NON_NEGATIVE, NON_NEGATIVE_INT = _number(float, 0), _number(int, 0)
RATE = _number(int, 1000, 384000)


def _feature_config(args: argparse.Namespace):
    from .config import FeatureConfig

    kw = {}
    for name in ("sample_rate", "n_mfcc", "pitch_method", "voice"):
        value = getattr(args, name, None)
        if value is not None:
            kw[name] = value
    return FeatureConfig(**kw)


def _cache_dir(args: argparse.Namespace):
    from .extraction import default_cache_dir

    if getattr(args, "no_cache", False):
        return None
    return Path(args.cache_dir) if getattr(args, "cache_dir", None) else default_cache_dir()


def _progress(args: argparse.Namespace) -> bool:
    """Whether to show progress bars, the same in every command: on a terminal (stderr), hidden otherwise (a log
    file, a pipe, a test); ``--progress`` shows them anywhere, ``-q`` hides them."""
    if getattr(args, "quiet", False):
        return False
    return bool(getattr(args, "progress", False)) or sys.stderr.isatty()


def _report_problems(problems, limit: int = 20) -> None:
    """Each skipped file or row on stderr (the first ``limit``), then a count."""
    for pr in problems[:limit]:
        print(f"skipped: {pr}", file=sys.stderr)
    if len(problems) > limit:
        print(f"skipped: ... and {len(problems) - limit} more", file=sys.stderr)


# ------------------------------------------------------------------------------------------- commands
def _describe(table) -> str:
    speakers = len(set(table.speakers.tolist())) if table.has_speakers else "unknown"
    corpora = sorted(set(table.corpora.tolist()))
    return (f"{len(table)} clips of {speakers} speakers ({', '.join(corpora)}); per class: "
            + ", ".join(f"{k} {v}" for k, v in table.counts().items()))


def cmd_features(args: argparse.Namespace) -> int:
    table = _dataset(args, _feature_config(args))
    npz, csv_path = table.save(args.out)
    print(_describe(table))
    print(f"{table.stats.shape[1]} statistics and {len(table.frame_names)} frame features per clip -> {npz} "
          f"(+ {csv_path.name})")
    return 0


def _model_configs(args: argparse.Namespace):
    from .config import ClassifierConfig, TrainConfig, VAEConfig

    vkw = {k: getattr(args, k) for k in ("latent_dim", "beta", "epochs") if getattr(args, k, None) is not None}
    ckw = {}
    if getattr(args, "no_latent", False):
        ckw["use_latent"] = False
    if getattr(args, "latent_only", False):
        ckw["use_stats"] = False
    if getattr(args, "quick", False):  # evaluate --quick: a quick estimate (options given explicitly still win)
        ckw.update(QUICK)
    for key in ("voice_epochs", "voice_copies_per_epoch", "head_stats"):
        if getattr(args, key, None) is not None:
            ckw[key] = getattr(args, key)
    tkw = {"seed": args.seed}
    if getattr(args, "threads", None) is not None:
        tkw["threads"] = args.threads
    if getattr(args, "speed_perturb", None) is not None:
        tkw["speed_perturb"] = tuple(args.speed_perturb)
    if getattr(args, "degraded_copies", None) is not None:
        tkw["degraded_copies"] = args.degraded_copies
    return VAEConfig(**vkw), ClassifierConfig(**ckw), TrainConfig(**tkw)


def _check_output_dir(path: str, force: bool) -> Path:
    """``path`` as a run/model folder that may be written: new or empty, or ``force`` (never silently
    overwrite earlier work); checked before any work, created only when there is something to write."""
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise ParameterError(f"{d} exists and is not a folder")
    if d.is_dir() and any(d.iterdir()) and not force:
        raise ParameterError(f"{d} already holds files; choose a new folder or pass --force to overwrite")
    return d


def _new_output_dir(path: str, force: bool) -> Path:
    """``_check_output_dir``, then the folder made."""
    d = _check_output_dir(path, force)
    d.mkdir(parents=True, exist_ok=True)
    return d


def _dataset(args: argparse.Namespace, fcfg=None, tcfg=None, vcfg=None):
    """The feature table of every ``--data`` source (labels chosen and merged by ``--labels`` and ``--map``),
    with the features of its training copies when ``tcfg`` is given (its speeds and degraded copies; their frames
    pooled to ``vcfg.seq_len``, as training reads them). Bad
    manifest rows stop the command
    (naming file and line) unless ``--skip-bad-rows``; other skipped files are reported and counted."""
    from .corpus import parse_mapping
    from .extraction import extract_dataset

    labels = [x.strip() for x in args.labels.split(",") if x.strip()] if getattr(args, "labels", None) else None
    with _engine(args) as engine:
        if engine is not None and not args.quiet:
            print(f"extracting on {engine.label}", file=sys.stderr)
        table, problems = extract_dataset(args.data, fcfg or _feature_config(args), labels=labels,
                                          mapping=parse_mapping(getattr(args, "map", None)),
                                          speaker_pattern=getattr(args, "speaker_pattern", None),
                                          skip_bad_rows=getattr(args, "skip_bad_rows", False),
                                          cache_dir=_cache_dir(args), n_jobs=args.jobs, progress=_progress(args),
                                          engine=engine)
        _report_problems(problems)
        if problems:
            print(f"{len(problems)} item(s) skipped (see messages above)", file=sys.stderr)
        if tcfg is None:
            return table
        return table.augment(tcfg.speed_perturb, degraded=tcfg.degraded_copies, cache_dir=_cache_dir(args),
                             n_jobs=args.jobs, progress=_progress(args), engine=engine,
                             pool_to=None if vcfg is None else vcfg.seq_len)


def _print_metrics(m: dict) -> None:
    if m.get("estimate"):
        print(m["estimate"])
    line = (f"balanced accuracy (UA) {m['balanced_accuracy']:.3f}, accuracy {m['accuracy']:.3f}, "
            f"macro-F1 {m['macro_f1']:.3f}, reconstruction {m['reconstruction_loss']:.3f} "
            f"({m['n_files']} clips, {m.get('n_speakers', '?')} speakers; chance {m['chance']:.3f})")
    print(line)
    if m.get("warning"):
        print(f"WARNING: {m['warning']}")
    if "mean" in m:
        mean, std = m["mean"], m["std"]
        print("per fold: UA " + " ".join(f"{f['balanced_accuracy']:.3f}" for f in m["folds"])
              + f"; mean {mean['balanced_accuracy']:.3f} +- {std['balanced_accuracy']:.3f}")
    print("recall per class: " + ", ".join(f"{k} {v:.2f}" for k, v in m["per_class_recall"].items()))
    if "all_classes" in m:
        print(f"all {len(m['all_classes']['confusion']['labels'])} classes, unrestricted argmax: UA "
              f"{m['all_classes']['balanced_accuracy']:.3f}")
    for corpus, cm in m.get("per_corpus", {}).items():
        print(f"  {corpus}: UA {cm['balanced_accuracy']:.3f} ({cm['n_files']} clips)")
    for other in ("strict", "adapted", "test_time_augmented"):
        if other in m:
            print(f"{m[other]['mode']}: UA {m[other]['mean']['balanced_accuracy']:.3f} +- "
                  f"{m[other]['std']['balanced_accuracy']:.3f} (same folds and models)")


def _require_train() -> None:
    """Training, evaluation and export need the ``train`` extra: say so before any work starts."""
    from .errors import require

    for module in ("torch", "sklearn", "onnx"):
        require(module, "train")


def cmd_train(args: argparse.Namespace) -> int:
    _require_train()
    from .corpus import parse_mapping
    from .train.pipeline import train_model

    _check_output_dir(args.out, args.force)
    fcfg = _feature_config(args)
    vcfg, ccfg, tcfg = _model_configs(args)
    table = _dataset(args, fcfg, tcfg, vcfg)
    if not table.has_speakers:
        raise DataError("these clips have no speaker ids: training needs them for its speaker-disjoint inner "
                        "split and the adapted head (a manifest's speaker column, or --speaker-pattern)")
    out = _new_output_dir(args.out, args.force)
    _, res = train_model(table, out, fcfg, vcfg, ccfg, tcfg, cv=args.cv, split=args.split,
                         command="emovae " + " ".join(args.argv), progress=_progress(args),
                         save_folds=args.save_folds, label_map=parse_mapping(getattr(args, "map", None)))
    if res is not None:
        print("cross-validation: ", end="")
        _print_metrics(res.metrics)
    print(f"model trained on {_describe(table)} -> {out}")
    return 0


#: ``evaluate --quick``: the voice student, most of a fit's time, trains half its epochs on each clip and one of
#: its copies per epoch (``--voice-copies-per-epoch 1``: 2-4x faster alone, docs/research.md section 32)
QUICK = {"voice_epochs": 20, "voice_copies_per_epoch": 1}
#: measured cost of cross-validation, minutes per 1000 training clips per fold, one thread of a 2-core machine
#: (docs/results.md, benchmarks/results-robustness.md: ``emovae evaluate --cv 5 --threads 1`` on the 1200 RAVDESS
#: development clips took 46 minutes with the default recipe, 65 with ``--degraded-copies 2``); a slower machine
#: took up to 5x longer (docs/research.md section 32)
CV_MINUTES_PER_1000 = 9.6
CV_MINUTES_PER_1000_DEGRADED_2 = 13.5
COST_NOTE = ("Cost: nearly all of it is fitting one model per fold. Measured with --threads 1, two runs side by side "
             "on a 2-core machine, the default recipe took about 10 minutes per 1000 training clips per fold (13-14 "
             "with --degraded-copies 2): 1000 clips in 5 folds (800 training clips each) about 40 minutes; an older, "
             "slower machine took up to 5x longer. --voice-copies-per-epoch 1 fits about 2-4x faster; --quick (a quick estimate: the voice "
             "student trains 20 epochs instead of 40, on each clip and one of its copies per epoch) faster still, "
             "at some cost in accuracy: a first look, not the figure to report. Figures: docs/data.md, Scale.")


def cv_cost_note(n_clips: int, n_folds: int, fcfg, ccfg, tcfg) -> str:
    """One line on what a cross-validation of ``n_clips`` clips in ``n_folds`` folds will cost, from the measured
    rate (``CV_MINUTES_PER_1000``): the default recipe's minutes, scaled by clips and folds; said plainly when
    the options make it faster (by a factor not measured as a whole) or when no voice student is trained."""
    train = n_clips * (n_folds - 1)  # training clips summed over the folds
    head = f"{n_folds} folds of about {round(train / n_folds)} training clips"
    if not fcfg.voice:
        return f"{head}; no voice student (--voice 0), the bulk of the measured cost: minutes, not hours"
    per = CV_MINUTES_PER_1000 + (CV_MINUTES_PER_1000_DEGRADED_2 - CV_MINUTES_PER_1000) * tcfg.degraded_copies / 2
    minutes = per * train / 1000
    note = (f"{head}: about {minutes:.0f} minutes with this many copies on one thread of a 2-core machine "
            f"(measured: about {per:.0f} minutes per 1000 training clips per fold; up to 5x on a slower machine)")
    if ccfg.voice_copies_per_epoch or ccfg.voice_epochs < type(ccfg)().voice_epochs:
        note += (f"; the voice student's {ccfg.voice_epochs} epochs of "
                 + (f"each clip and {ccfg.voice_copies_per_epoch} copy(ies)" if ccfg.voice_copies_per_epoch
                    else "every copy") + " make it faster (--voice-copies-per-epoch 1 alone: 2-4x)")
    return note


def cmd_evaluate(args: argparse.Namespace) -> int:
    _require_train()
    from .config import to_dict
    from .evaluate import cross_validate, evaluate_model, write_report
    from .train.estimator import EmotionRecognizer

    _check_output_dir(args.out, args.force)
    if args.model:
        if args.quick:
            raise ParameterError("--quick makes cross-validation's fits faster; with --model nothing is fitted: "
                                 "drop one of them")
        model = EmotionRecognizer.load(args.model)
        table = _dataset(args, model.configs()[0])
        res = evaluate_model(model, table, adapted=args.speaker_norm)
        config = {"model": str(args.model), "data": [str(d) for d in args.data]}
    else:
        fcfg = _feature_config(args)
        vcfg, ccfg, tcfg = _model_configs(args)
        table = _dataset(args, fcfg, tcfg, vcfg)
        n_folds = args.cv if args.split != "corpus" else len(set(table.corpora.tolist()))
        if not args.quiet:
            print(f"cross-validation: {cv_cost_note(len(table), n_folds, fcfg, ccfg, tcfg)}", file=sys.stderr)
        show = _progress(args)
        res = cross_validate(table, lambda: EmotionRecognizer(fcfg, vcfg, ccfg, tcfg, progress=show),
                             n_splits=args.cv, seed=args.seed, progress=show, adapted=args.speaker_norm,
                             split=args.split, save_folds=args.save_folds)
        config = {"data": [str(d) for d in args.data], "cv": args.cv, "split": args.split, "seed": args.seed,
                  "labels": args.labels, "map": args.map, "quick": args.quick, "feature_config": to_dict(fcfg),
                  "vae_config": to_dict(vcfg), "classifier_config": to_dict(ccfg), "train_config": to_dict(tcfg)}
        if args.quick:
            how = (f"the voice student trained {ccfg.voice_epochs} epochs on each clip and "
                   f"{ccfg.voice_copies_per_epoch} of its copies per epoch" if fcfg.voice else
                   "no voice student here (--voice 0), so it changed nothing")
            res.metrics["estimate"] = (f"QUICK ESTIMATE (--quick: {how}): a first look; the full recipe may score "
                                       "higher. Rerun without --quick for the figure to report")
    out = _new_output_dir(args.out, args.force)
    write_report(out, res, config=config, figures=not args.no_figures)
    _print_metrics(res.metrics)
    print(f"report -> {out} (report.md, metrics.json, predictions.csv" + ("" if args.no_figures else ", figures")
          + ")")
    return 0


def _recognizer(args: argparse.Namespace):
    from .runtime import Recognizer

    from .audio import MAX_DECODED_BYTES, MIB

    max_mb = getattr(args, "max_decoded_mb", None)
    return Recognizer.load(args.model, backend=args.backend, abstain=getattr(args, "abstain", False),
                           tta=getattr(args, "tta", False),
                           max_decoded_bytes=MAX_DECODED_BYTES if max_mb is None else int(max_mb * MIB))


def _speakers(files: list[str], how: str) -> list[str | None]:
    """The speaker of each file for batch adaptation (``--speaker-from``): ``folder``, its parent folder (with a
    warning for a folder whose file names name several speakers); ``name`` (``actor`` is its older alias), the
    speaker in its name by any naming convention of the corpus layer (``corpus.NAMING``), as ``corpus/speaker``;
    or else a CSV/TSV table in the one vocabulary (columns ``path`` or ``file``, and ``speaker``: a training
    manifest will do). None (reported) for a file whose speaker is unknown."""
    from .corpus import NAMING, speaker_in_name

    if how == "folder":
        out = [str(Path(f).resolve().parent) for f in files]
        _warn_mixed_folders(files, out)
        return out
    if how in ("name", "actor"):
        out = []
        for f in files:
            found = speaker_in_name(f)
            if found is None:
                _err(f"{f}: skipped: its name follows no naming convention emovae knows ({', '.join(NAMING)}); "
                     "use --speaker-from folder, or a table with columns path,speaker")
            out.append(None if found is None else "/".join(found))
        return out
    return _speakers_from_table(files, Path(how))


def _warn_mixed_folders(files: list[str], folders: list[str]) -> None:
    """Warn (stderr) for each folder whose files' names say they hold clips of several speakers (a SAVEE folder: DC,
    JE, JK, KL): ``--speaker-from folder`` would adapt them as one speaker."""
    from collections import defaultdict

    from .corpus import speaker_in_name

    named = defaultdict(set)
    for f, folder in zip(files, folders):
        found = speaker_in_name(f)
        if found is not None:
            named[folder].add(found)
    for folder, found in named.items():
        if len(found) > 1:
            kinds = sorted({k for k, _ in found})
            who = "; ".join(f"{k}: {', '.join(sorted(spk for kk, spk in found if kk == k))}" for k in kinds)
            print(f"emovae: warning: {folder}: its file names name {len(found)} speakers ({who}), but --speaker-from "
                  "folder adapts all of its clips as ONE speaker; use --speaker-from name to adapt each speaker on "
                  "its own", file=sys.stderr)


def _speakers_from_table(files: list[str], table: Path) -> list[str | None]:
    """Each file's speaker from the ``speaker`` column of a CSV/TSV ``table`` (``corpus.read_rows``): matched by its
    path (relative ones from the table's folder, or as given from the working folder), else by its file name when
    that name has one speaker in the table."""
    import os

    from .corpus import read_rows, table_path

    if not table.is_file():
        raise ParameterError(f"--speaker-from {table}: not 'folder', 'name' (or 'actor') nor an existing CSV/TSV "
                             "table with columns path,speaker")

    def key(p) -> str:
        return os.path.normcase(os.path.normpath(os.path.abspath(p)))

    _, rows = read_rows(table, ("path", "speaker"), "--speaker-from")
    by_path, by_name = {}, {}
    for _, r in rows:
        if r.get("path") and r.get("speaker"):
            by_path.setdefault(key(table_path(table, r["path"])), r["speaker"])
            by_path.setdefault(key(r["path"]), r["speaker"])
            by_name.setdefault(Path(r["path"]).name, set()).add(r["speaker"])
    out = []
    for f in files:
        spk = by_path.get(key(f))
        if spk is None and len(by_name.get(Path(f).name, ())) == 1:
            spk = next(iter(by_name[Path(f).name]))
        if spk is None:
            _err(f"{f}: skipped: no speaker for it in {table}; add a row with its path and speaker")
        out.append(spk)
    return out


def _engine(args: argparse.Namespace):
    """A context: the Dask engine of ``--scheduler`` / ``--workers`` / ``$DASK_SCHEDULER_ADDRESS`` (cluster.py),
    or None (one process, and dask is never imported)."""
    import contextlib

    from . import cluster

    if not cluster.wanted(getattr(args, "scheduler", None), getattr(args, "workers", None)):
        return contextlib.nullcontext(None)
    return cluster.Engine(args.scheduler, args.workers)


def _add_cluster_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster (needs emovae[scale]; default: this process only)")
    g.add_argument("--workers", type=_number(int, 1, 1024), metavar="N",
                   help="start a local Dask cluster of N single-threaded worker processes for this run")
    g.add_argument("--scheduler", metavar="tcp://HOST:8786",
                   help="run on an existing Dask cluster (default: $DASK_SCHEDULER_ADDRESS when set); files and "
                        "model must be at the same paths on every worker")


def _print_prediction(p, as_json: bool, speaker: str | None = None) -> None:
    """One prediction on stdout: a JSON object, or a line of text (with arousal and valence when the model gives
    them); ``speaker``: the speaker it was adapted to (``--speaker-from``), given in both."""
    import json

    from .affect import affect_text

    if as_json:
        d = p.to_dict()
        if speaker is not None:  # right after the file, as in the tables
            d = {"file": d.pop("file", None), "speaker": speaker, **d}
        print(json.dumps(d), flush=True)
        return
    top = ", ".join(f"{e} {v:.2f}" for e, v in p.top(3))
    adapted = f"  [adapted: {p.speaker_clips} clips of the speaker]" if p.adapted else ""
    if speaker is not None:
        adapted = (f"  [speaker {speaker}: " + ("adapted to" if p.adapted else "too few to adapt:")
                   + f" {p.speaker_clips} clip(s) of the speaker]")
    head = f"{p.emotion} ({p.confidence:.2f})" if p.answer == p.emotion else (
        f"{p.answer} (most probable {p.emotion} {p.confidence:.2f}"
        + ("" if p.answer != "not speech" or p.speech is None else f"; speech score {p.speech:.2f}") + ")")
    print(f"{p.file}: {head}  top 3: {top}{affect_text(p.arousal, p.valence)}{adapted}", flush=True)


def cmd_predict(args: argparse.Namespace) -> int:
    from . import audio, batch

    if args.tta and args.speaker_from:
        raise ParameterError("--tta scores single clips; with --speaker-from the clips adapt to their speaker "
                             "instead: use one or the other")
    if args.out:
        batch.table_format(args.out)
    if (args.workers or args.scheduler) and (not args.out or args.speaker_from):
        raise ParameterError("--workers/--scheduler score a batch into a table: add --out results.csv (and no "
                             "--speaker-from: adapting to a speaker needs all of that speaker's clips in one place)")
    files, problems = batch.expand_inputs(args.files, sys.stdin)
    rec = _recognizer(args)
    if args.out and not args.speaker_from:
        with _engine(args) as engine:
            scorer = None
            if engine is not None:
                from .cluster import ModelSpec

                model = str(Path(args.model).resolve()) if args.model else None
                scorer = engine.scorer(ModelSpec(model, args.backend, args.abstain, args.tta), rec.classes)
                print(f"scoring on {engine.label}", file=sys.stderr)
            counts = batch.run_to_table(rec, files, problems, args.out, progress=_progress(args), scorer=scorer,
                                        jobs=args.jobs)
        return _table_summary(counts, args.out)
    failed = 0
    if not args.out:
        for spec, msg in problems:
            failed += 1
            _err(f"{spec}: skipped: {msg}")
    if not args.speaker_from:
        for _, p, error in batch.predictions(rec, files, jobs=args.jobs):  # features on --jobs processes
            if error is not None:
                failed += 1
                _err(error)
            else:
                _print_prediction(p, args.json)
        return 1 if failed else 0
    # batch adaptation: every clip is normalised with the moments of all clips of its speaker
    from .speaker import SessionConfig

    speakers = _speakers(files, args.speaker_from)
    feats, names, spk, rows = [], [], [], []
    cfg = rec.feature_config
    for path, s in zip(files, speakers):
        if s is None:
            failed += 1
            rows.append(batch.error_row(path, f"{path}: no speaker for it (--speaker-from {args.speaker_from})",
                                        rec.classes))
            continue
        try:
            feats.append(rec.features(audio.load(path, cfg.sample_rate, min_duration=cfg.min_duration,
                                                 max_decoded_bytes=rec.max_decoded_bytes),
                                      cfg.sample_rate, str(path)))
            names.append(str(path))
            spk.append(s)
        except EmovaeError as exc:
            failed += 1
            msg = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            rows.append(batch.error_row(path, msg, rec.classes, speaker=s))
            if not args.out:
                _err(msg)
    preds = rec.predict_by_speaker(feats, spk, names, SessionConfig(prior_weight=args.prior_weight)) if feats else []
    if args.out:
        rows += [batch.prediction_row(p, rec.classes, speaker=s) for p, s in zip(preds, spk)]
        counts = batch.run_to_table(rec, files, problems, args.out, rows=rows, speaker=True)
        return _table_summary(counts, args.out)
    for p, s in zip(preds, spk):
        _print_prediction(p, args.json, speaker=s)
    return 1 if failed else 0


def _table_summary(counts: dict, out) -> int:
    skipped = f", {counts['skipped']} already in the table" if counts["skipped"] else ""
    print(f"{counts['scored']} files scored, {counts['failed']} failed{skipped} -> {out}", file=sys.stderr)
    return 1 if counts["failed"] else 0


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from .evaluate import demo_report, demo_truth
    from .affect import affect_text

    out = _new_output_dir(args.out, args.force) if args.out else Path(tempfile.mkdtemp(prefix="emovae-demo-"))
    rec = _recognizer(args)
    preds, metrics, written = demo_report(rec, out)
    for p, truth in zip(preds, demo_truth(rec, [p.file for p in preds])):
        mark = "ok " if truth == p.emotion else "   "
        top = ", ".join(f"{e} {v:.2f}" for e, v in p.top(3))
        said = "" if p.answer == p.emotion else f"  [answer: {p.answer}]"
        print(f"{mark}{Path(p.file).name}: true {truth:9s} predicted {p.emotion:9s} ({p.confidence:.2f})  top 3: "
              f"{top}{affect_text(p.arousal, p.valence)}{said}")
    cv = rec.meta.get("metrics", {})
    print(f"{metrics['n_correct']}/{metrics['n_files']} demo clips right ({rec.backend} backend). These speakers are in "
          "the shipped model's training set, so this shows the pipeline, not accuracy.")
    if cv.get("mean"):
        print(f"Speaker-independent {cv.get('evaluation', 'cross-validation')}: balanced accuracy "
              f"{cv['mean']['balanced_accuracy']:.3f} +- {cv['std']['balanced_accuracy']:.3f} (chance 0.125)")
        if cv.get("adapted"):
            a = cv["adapted"]
            print(f"With several clips of a speaker (--speaker-from, stream --adapt, service sessions): "
                  f"{a['mean']['balanced_accuracy']:.3f} +- {a['std']['balanced_accuracy']:.3f}")
    print(f"report -> {out} ({', '.join(written)})")
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    import json

    from . import stream

    rec = _recognizer(args)
    cfg = stream.StreamConfig(window_s=args.window, hop_s=args.hop, gate_db=args.gate_db)
    if args.mic:
        chunks, sr = stream.mic_chunks(args.rate), args.rate
    elif args.source in (None, "-"):
        chunks, sr = stream.pcm_chunks(sr=args.rate), args.rate
    else:
        chunks, sr = stream.file_chunks(args.source)
    session = None
    if args.adapt:
        from .session import Session
        from .speaker import SessionConfig

        session = Session(rec, SessionConfig(prior_weight=args.prior_weight))
    for ev in stream.run(rec, chunks, sr, cfg, session=session):
        print(json.dumps(ev.to_dict()) if args.json else ev, flush=True)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .audio import MAX_DECODED_BYTES
    from .serve import ServeConfig, run

    mib = 1024 * 1024
    decoded = MAX_DECODED_BYTES if args.max_decoded_mb is None else int(args.max_decoded_mb * mib)
    cfg = ServeConfig(max_bytes=int(args.max_mb * mib), max_seconds=args.max_seconds, workers=args.workers,
                      session_ttl_s=args.session_ttl, max_sessions=args.max_sessions, prior_weight=args.prior_weight,
                      max_pending_bytes=None if args.max_pending_mb is None else int(args.max_pending_mb * mib),
                      queue_timeout_s=args.queue_timeout, body_timeout_s=args.body_timeout,
                      header_timeout_s=args.header_timeout, keep_alive_s=args.keep_alive,
                      new_sessions_per_min=args.session_rate, new_sessions_per_min_total=args.session_rate_total,
                      allow_origins=tuple(args.allow_origin or ()), max_decoded_bytes=decoded,
                      session_store=args.session_store, allow_hosts=tuple(args.allow_host or ()))
    run(args.host, args.port, args.model, args.backend, cfg, log_level="warning" if args.quiet else "info",
        abstain=args.abstain, processes=args.processes, feature_processes=args.feature_processes)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    _require_train()
    from .modelfile import PRETRAINED_DIR, VOICE_FILE, read_model_json
    from .train.estimator import EmotionRecognizer
    from .train.export import export_onnx

    src = Path(args.model) if args.model else PRETRAINED_DIR
    model = EmotionRecognizer.load(src)
    path = export_onnx(model, args.onnx, read_model_json(src))
    print(f"{src} -> {path} ({path.stat().st_size / 1024:.0f} KiB; parity with torch checked)")
    if getattr(model, "voice_onnx_", None) is not None:  # the voice student travels beside the network
        (path.parent / VOICE_FILE).write_bytes(model.voice_onnx_)
        print(f"  + {path.parent / VOICE_FILE} (the model's voice student; keep it beside {path.name})")
    return 0


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--latent-dim", type=POSITIVE_INT, dest="latent_dim", help="VAE latent size (default 16)")
    g.add_argument("--beta", type=NON_NEGATIVE, help="KL weight (default 1.0)")
    g.add_argument("--epochs", type=POSITIVE_INT, help="maximum VAE epochs (default 80; early stopping on inner split)")
    g.add_argument("--no-latent", action="store_true", help="classifier on handcrafted statistics only")
    g.add_argument("--latent-only", action="store_true", help="classifier on the VAE latent only")
    g.add_argument("--head-stats", choices=["auto", "all", "voice"], dest="head_stats",
                   help="statistics the heads read: all, or only the voice student's 512; auto (default): the "
                        "voice student's when there is one (--voice > 0), else all")
    g.add_argument("--voice-epochs", type=POSITIVE_INT, dest="voice_epochs", metavar="N",
                   help="training epochs of the voice student (with --voice; default 40)")
    g.add_argument("--voice-copies-per-epoch", type=NON_NEGATIVE_INT, dest="voice_copies_per_epoch", metavar="N",
                   help="each epoch of the voice student reads every clip and N of its training copies drawn at "
                        "random (default 0: every copy in every epoch); N=1 fits about 4x faster with 2 degraded "
                        "copies but learns them much less (docs/research.md section 32): for quick runs")
    g.add_argument("--speaker-norm", action="store_true", dest="speaker_norm",
                   help="score in adapted mode, as predict --speaker-from: each clip adapted with all of its "
                        "speaker's (unlabelled) clips")
    g.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="random seed (folds, inner split, VAE)")
    g.add_argument("--threads", type=_number(int, 1, 256), dest="threads", metavar="N",
                   help="torch threads while training (default 2: the voice student trains about 3x faster "
                        "on 2 than on 1)")
    g.add_argument("--speed-perturb", type=_number(float, 0.5, 2.0), nargs="*", dest="speed_perturb", metavar="FACTOR",
                   help="the classifier also learns from the training clips played at these speeds (default "
                        "0.8 0.9 1.1 1.2; give no value to turn it off)")
    g.add_argument("--degraded-copies", type=_number(int, 0, 8), dest="degraded_copies", metavar="N",
                   help="the voice student and the classifier also learn from N degraded copies of each training "
                        "clip (noise, a room, a telephone channel, level, clipping or a 1.5-3 s window; seeded "
                        "per clip; default 0)")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, action="append", metavar="[KIND=]PATH",
                   help="labelled clips; repeat to mix sources. A folder named by a corpus convention (ravdess, "
                        "savee, crema-d, tess, emodb, emovo; detected, or given as KIND=PATH), a folder per label "
                        "(folders=PATH: angry/x.wav ...), or a CSV/TSV manifest with columns path,label,speaker "
                        "[,corpus] (paths relative to it; 'file' is read as 'path')")
    g.add_argument("--labels", metavar="A,B,...",
                   help="keep only these classes (after --map), e.g. angry,happy,neutral,sad; others are dropped "
                        "with a count")
    g.add_argument("--map", metavar="FROM=TO,...", help="merge labels, e.g. calm=neutral")
    g.add_argument("--speaker-pattern", dest="speaker_pattern", metavar="REGEX",
                   help="for a folder per label: the speaker in each file name, a regular expression with a group "
                        "named speaker, e.g. '^(?P<speaker>[^_]+)_'")
    g.add_argument("--skip-bad-rows", action="store_true", dest="skip_bad_rows",
                   help="leave out bad manifest rows (missing file, empty label or speaker) instead of stopping")


def _add_feature_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("features")
    g.add_argument("--sample-rate", type=_number(int, 8000, 384000), dest="sample_rate", help="analysis rate in Hz (default 16000)")
    g.add_argument("--n-mfcc", type=_number(int, 1, 128), dest="n_mfcc", help="number of MFCCs (default 40)")
    g.add_argument("--pitch", choices=["yin-acf", "yin", "max"], dest="pitch_method",
                   help="yin-acf: YIN on the STFT's frame grid at half the rate (default); yin: YIN on its own "
                        "1024-sample frames (models before 2026-12-07); max: highest spectral peak per frame")
    g.add_argument("--voice", type=_number(int, 0, 1024), dest="voice", metavar="UNITS",
                   help="train a voice student of this many LSTM units on the GE2E teacher and join its 512 "
                        "statistics to the utterance statistics (docs/research.md sections 24-27; default 128, the "
                        "shipped recipe; 0 = off: hand-made features only)")
    g.add_argument("--jobs", type=_number(int, 1, 256), default=None, help="worker processes (default: all cores)")
    g.add_argument("--cache-dir", help="feature cache folder (default $EMOVAE_CACHE_DIR or ~/.cache/emovae)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    _add_cluster_args(p)


def _add_prior_arg(p: argparse.ArgumentParser) -> None:
    from .speaker import PRIOR_WEIGHT

    p.add_argument("--prior-weight", type=NON_NEGATIVE, default=PRIOR_WEIGHT, dest="prior_weight",
                   help=f"with adaptation: the model's prior of a speaker counts as this many clips (default "
                        f"{PRIOR_WEIGHT:g}; smaller adapts faster to varied speech but loses accuracy on speech that "
                        "stays calm)")


def _add_training_command(sub, name: str, help_text: str, out_help: str, func,
                          epilog: str | None = None) -> argparse.ArgumentParser:
    """A subcommand that reads a labelled folder and writes a new folder, with the model and feature options."""
    p = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog)
    _add_display_args(p)
    _add_data_args(p)
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--split", choices=["speaker", "corpus", "random"], default="speaker",
                   help="cross-validation folds: by speaker (default), leave-one-corpus-out (--data given twice or "
                        "more), or random over files (SPEAKER-DEPENDENT, labelled so; only when there are no "
                        "speaker ids)")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out folder")
    _add_model_args(p)
    _add_feature_args(p)
    p.set_defaults(func=func)
    return p


def _add_display_args(p: argparse.ArgumentParser, top: bool = False) -> None:
    """``-q`` and ``--progress`` (``_progress``), on the top parser and again on each command that shows progress
    bars, so that they may come before or after the command's name."""
    default = False if top else argparse.SUPPRESS  # a command's parser must not undo the top parser's value
    p.add_argument("-q", "--quiet", action="store_true", default=default,
                   help="no progress bars nor progress messages")
    p.add_argument("--progress", action="store_true", default=default,
                   help="show progress bars even when stderr is not a terminal (default: only on a terminal)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="emovae", description="Speech emotion recognition with a VAE.")
    parser.add_argument("--version", action="version", version=f"emovae {__version__}")
    _add_display_args(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("features", help="extract features of labelled clips into a table (.npz + .csv)")
    _add_display_args(p)
    _add_data_args(p)
    p.add_argument("--out", required=True, help="output .npz (a .csv index is written beside it)")
    _add_feature_args(p)
    p.set_defaults(func=cmd_features)

    p = _add_training_command(sub, "train", "train a model on labelled clips (any corpus, any labels)",
                              "new model folder (model.onnx + model.json)", cmd_train)
    p.add_argument("--cv", type=_number(int, 0, 100), default=0,
                   help="also run K-fold actor CV and store its metrics in the model")
    p.add_argument("--save-folds", dest="save_folds", metavar="DIR",
                   help="with --cv: also save each fold's model in DIR/seed{S}-fold{K}/ (benchmarks --models)")

    p = _add_training_command(sub, "evaluate", "speaker-independent evaluation: actor CV, or a saved model on new "
                              "speakers", "new run folder for report.md, metrics.json, predictions.csv and figures",
                              cmd_evaluate, epilog=COST_NOTE)
    p.add_argument("--quick", action="store_true",
                   help="a QUICK ESTIMATE, labelled so in the report: the voice student trains 20 epochs instead of "
                        "40, on each clip and one of its copies per epoch (--voice-copies-per-epoch 1); several "
                        "times faster and less accurate: a first look, not the figure to report")
    p.add_argument("--cv", type=_number(int, 2, 100), default=5,
                   help="actor-grouped folds (default 5; ignored with --model)")
    p.add_argument("--save-folds", dest="save_folds", metavar="DIR",
                   help="also save each fold's model in DIR/seed{S}-fold{K}/ (benchmarks --models)")
    p.add_argument("--model", help="score this saved model instead of cross-validating")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")

    p = sub.add_parser("predict", help="name the emotion of audio files (shipped model by default)")
    _add_display_args(p)
    p.add_argument("files", nargs="+", metavar="input",
                   help="audio files (.wav, .flac, .ogg, .mp3), folders (searched recursively), glob patterns, "
                        "CSV/TSV tables with a 'path' (or 'file') column such as a training manifest, or - for a "
                        "list of paths on stdin")
    p.add_argument("--out", metavar="results.csv|.parquet|.jsonl",
                   help="write a table, one row per file (bad files get their error); an existing table is "
                        "resumed: files already scored are skipped and new rows added")
    p.add_argument("--model", help="model folder or exported .onnx file (default: the shipped model)")
    p.add_argument("--backend", choices=["auto", "onnx", "torch"], default="auto",
                   help="network backend (default auto: onnxruntime when installed)")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--abstain", action="store_true",
                   help="report 'unknown' for clips the VAE flags as unlike the training speech (noise, music)")
    p.add_argument("--speaker-from", dest="speaker_from", metavar="folder|name|TABLE",
                   help="adapt to each speaker: normalise every clip with the statistics of all clips of its "
                        "speaker, who is the file's folder (a warning when the names in one folder say several "
                        "speakers), the speaker in its name by a corpus convention (name, or its alias actor: "
                        "RAVDESS, SAVEE, CREMA-D, TESS, EmoDB, EMOVO), or the 'speaker' column of a CSV/TSV table "
                        "with columns path (or file) and speaker, such as a training manifest. Every output row "
                        "names its speaker")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: also score each clip at the model's training speeds and average "
                        "(+0.7 to +2.5 points of balanced accuracy measured, about 4x slower)")
    p.add_argument("--max-decoded-mb", type=POSITIVE, default=None, dest="max_decoded_mb", metavar="MB",
                   help="refuse a file whose decoded samples (float32, all channels, as its header declares them) "
                        "would take more than this many MiB, before decoding it (default 128, the service's too: "
                        "over 5 minutes of 48 kHz stereo, 35 of 16 kHz mono; longer recordings: emovae stream)")
    p.add_argument("--jobs", type=_number(int, 1, 256), default=None, metavar="N",
                   help="worker processes computing features (default: all cores; 1: this process); the network runs "
                        "on batches of clips in this process (--workers/--scheduler: on Dask instead)")
    _add_prior_arg(p)
    _add_cluster_args(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("demo", help="the shipped model on the bundled example clips, with a small report")
    p.add_argument("--out", help="new report folder (default: a fresh temporary folder)")
    p.add_argument("--model", help="model folder (default: the shipped model)")
    p.add_argument("--backend", choices=["auto", "onnx", "torch"], default="auto")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out folder")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("stream", help="time-stamped emotions over a sliding window (file, stdin or microphone)")
    p.add_argument("source", nargs="?", help="audio file, or - for raw 16-bit mono PCM on stdin (see --rate)")
    p.add_argument("--mic", action="store_true", help="read the default microphone (needs emovae[mic])")
    p.add_argument("--rate", type=RATE, default=16000, help="sample rate of stdin PCM / microphone (default 16000)")
    p.add_argument("--window", type=_number(float, 0.25, 600), default=2.0, help="window length in seconds (default 2.0)")
    p.add_argument("--hop", type=_number(float, 0.01, 600), default=0.5, help="seconds between results (default 0.5)")
    p.add_argument("--gate-db", type=_number(float, -200, 0), default=-55.0, dest="gate_db",
                   help="voice-activity gate: frames louder than this dBFS count as speech (default -55)")
    p.add_argument("--model", help="model folder or .onnx file (default: the shipped model)")
    p.add_argument("--backend", choices=["auto", "onnx", "torch"], default="auto")
    p.add_argument("--json", action="store_true", help="one JSON object per event")
    p.add_argument("--abstain", action="store_true",
                   help="report 'unknown' for clips the VAE flags as unlike the training speech (noise, music)")
    p.add_argument("--adapt", action="store_true",
                   help="treat the stream as one speaker's session: results adapt to the speaker as speech arrives")
    _add_prior_arg(p)
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("serve", help="HTTP service and web page on this machine (needs emovae[serve])")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_number(int, 0, 65535), default=8000, help="TCP port (default 8000)")
    p.add_argument("--model", help="model folder or exported .onnx file (default: the shipped model)")
    p.add_argument("--backend", choices=["auto", "onnx", "torch"], default="auto")
    p.add_argument("--max-mb", type=_number(float, 0.001, 4096), default=10.0, dest="max_mb", help="largest upload in MiB (default 10)")
    p.add_argument("--max-seconds", type=_number(float, 0.25, 3600), default=60.0, dest="max_seconds", help="longest clip (default 60)")
    p.add_argument("--workers", type=_number(int, 1, 256), default=2,
                   help="predictions in flight at once in each process, by threads (default 2; with feature "
                        "processes at least two per process)")
    p.add_argument("--processes", type=_number(int, 1, 256), default=1, metavar="N",
                   help="service processes on the one port, each with its own copy of the model (default 1); N > 1 "
                        "needs --session-store redis://... so that a speaker's session is shared. Limits "
                        "(--max-pending-mb, --session-rate...) hold per process")
    p.add_argument("--feature-processes", type=_number(int, 1, 256), default=None, dest="feature_processes",
                   metavar="N", help="with one service process: worker processes that decode uploads and compute "
                                     "their features, so that every core works (default: one per core, at most 8; 1: the "
                                     "--workers threads of the service process do it)")
    p.add_argument("--abstain", action="store_true",
                   help="report 'unknown' for clips the VAE flags as unlike the training speech (noise, music)")
    p.add_argument("--session-ttl", type=POSITIVE, default=1800.0, dest="session_ttl",
                   help="seconds an idle adaptation session is kept (default 1800)")
    p.add_argument("--max-sessions", type=POSITIVE_INT, default=10000, dest="max_sessions",
                   help="sessions kept at most; the least recently used go first (default 10000; in-process store)")
    p.add_argument("--session-store", dest="session_store", metavar="memory|redis://HOST:6379/0",
                   help="where adaptation sessions live: this process (default), or a Redis/Valkey server shared "
                        "by several processes or replicas (moments only, with the TTL in the server; needs "
                        "emovae[scale])")
    g = p.add_argument_group("limits (a service open to others)")
    g.add_argument("--max-pending-mb", type=POSITIVE, dest="max_pending_mb",
                   help="request bodies held in memory at once, MiB (default: room for 6 uploads of --max-mb); "
                        "beyond it uploads wait --queue-timeout seconds, then get 429 with Retry-After")
    for flag, default, what in (
            ("--queue-timeout", 10.0, "seconds an upload waits for room"),
            ("--body-timeout", 30.0, "seconds a request body may take to arrive in full, else 408"),
            ("--header-timeout", 10.0, "seconds a connection may take to send its request headers"),
            ("--keep-alive", 5.0, "seconds an idle connection is kept open"),
            ("--session-rate", 30.0, "new sessions per minute per client address, else 429"),
            ("--session-rate-total", 600.0, "new sessions per minute in all")):
        g.add_argument(flag, type=POSITIVE, default=default, dest=flag[2:].replace("-", "_"),
                       help=f"{what} (default {default:g})")
    g.add_argument("--allow-origin", action="append", dest="allow_origin", metavar="ORIGIN",
                   help="a web origin (https://app.example.com) whose pages may call this service; repeat for "
                        "more, * for any (default: same origin only)")
    g.add_argument("--allow-host", action="append", dest="allow_host", metavar="HOST",
                   help="a host name (svc.example.com, *.example.com) this service answers to, besides localhost, "
                        "--host and IP addresses; others get 400 (a guard against DNS rebinding); repeat for more, "
                        "* for any")
    g.add_argument("--max-decoded-mb", type=POSITIVE, default=None, dest="max_decoded_mb", metavar="MB",
                   help="decoded samples of one clip, MiB, else 413 before decoding (default 128, as emovae predict)")
    _add_prior_arg(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="export a model's network to one self-contained ONNX file")
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--model", help="model folder (default: the shipped model)")
    p.set_defaults(func=cmd_export)
    return parser


def _single_thread_blas() -> None:
    """numpy's BLAS on one thread (unless the user chose): per-clip matrices are small, and BLAS threads only
    contend with the worker processes and the network's own threads. Must run before numpy is imported."""
    import os

    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def main(argv: list[str] | None = None) -> int:
    if "numpy" not in sys.modules:
        _single_thread_blas()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if getattr(args, "quiet", False) and getattr(args, "progress", False):
        parser.error("-q hides progress bars and --progress shows them: give one of them")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    import warnings

    from .errors import AudioWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", AudioWarning)  # the printer says each input's once, as one line
            warnings.showwarning = _warning_printer()
            return int(args.func(args) or 0)
    except EmovaeError as exc:
        _err(str(exc))
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:  # the reader went away (``emovae predict ... | head``): stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # a file or folder emovae was asked to write or read and could not
        _err(f"{exc.filename or 'input/output'}: {exc.strerror or exc}")
        return 2
    except Exception as exc:  # a bug: one line, not a traceback (EMOVAE_DEBUG=1 shows it)
        import os

        if os.environ.get("EMOVAE_DEBUG"):
            raise
        _err(f"internal error ({type(exc).__name__}: {str(exc)[:200]}); please report it with the command that "
             "caused it (EMOVAE_DEBUG=1 prints the traceback)")
        return 70


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
