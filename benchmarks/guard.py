"""The speech guard behind ``in_domain``, speaker-independent: does it pass speech of any speaker, length and
channel, and stop non-speech?

On the dev actors' speaker-grouped folds, a guard is fitted per fold on the training actors' clips only
(``emovae.train.guard.fit_guard``, as ``emovae train`` does; no emotion network is needed), and scores:
- the held-out actors' clips under every condition of the robustness benchmark (``robustness.CONDITIONS``):
  share flagged (``in_domain`` false);
- speech it never heard: the LibriSpeech sample and SAVEE (share flagged, mean over the fold guards);
- non-speech (the out-of-domain benchmark's sets: noise, tones, chords, clicks) and speech turned unusable
  (time-reversed; under white noise at 0 and -5 dB): share flagged and AUROC against the held-out clean clips.
The shipped model's own guard (fitted on all 20 dev actors) is scored beside it on LibriSpeech, SAVEE and the
non-speech sets (not on the dev actors: it heard them).

Usage: python benchmarks/guard.py [--folds 5] [--every 2] [--jobs 2] [--out benchmarks/results-guard.md]
       python benchmarks/guard.py --quick
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

import common
import ood
import robustness

SR = common.SAMPLE_RATE


def clip_cues(job: tuple[str | None, np.ndarray | None, int, str]) -> np.ndarray | None:
    """The guard's cues of one clip (a path, or a signal) under one condition; None when it cannot be scored."""
    from emovae.audio import load
    from emovae.config import FeatureConfig
    from emovae.errors import EmovaeError
    from emovae.train.guard import clip_cues as cues

    path, y, seed, condition = job
    try:
        y = load(path, SR) if path is not None else y
        return cues(robustness.degrade(y, condition, seed), FeatureConfig())
    except EmovaeError:
        return None


def cue_table(pool, jobs: list) -> tuple[np.ndarray, np.ndarray]:
    """(cues (N, 12) of the clips that could be scored, their indices into ``jobs``)."""
    out = list(pool.map(clip_cues, jobs, chunksize=8))
    keep = [i for i, c in enumerate(out) if c is not None]
    return np.array([out[i] for i in keep]), np.array(keep, dtype=int)


def main() -> None:
    from emovae.config import FeatureConfig
    from emovae.corpus import scan
    from emovae.evaluate import speaker_folds
    from emovae.guard import SpeechGuard
    from emovae.runtime import PRETRAINED_DIR, Recognizer
    from emovae.train.guard import PERCENTILE, fit_guard_examples, guard_examples

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(ap, quick="2 folds, 6 conditions, 20 clips of each other set")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=2, help="score every N-th held-out clip under the conditions")
    ap.add_argument("--n", type=int, default=40, help="clips per non-speech set")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--copies", type=int, default=None, help="degraded copies per clip in the guards fitted here "
                    "(default: fit_guard's)")
    ap.add_argument("--percentiles", type=float, nargs="+", default=None,
                    help="thresholds to compare: each passes all but this %% of the guard's training speech (the "
                         "first one fills the main tables; default: fit_guard's, train.guard.PERCENTILE)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    args.percentiles = args.percentiles or [PERCENTILE]
    t0 = time.time()
    items = common.quick_items(args.data) if args.quick else scan(args.data)[0]
    paths = np.array([it.path for it in items])
    speakers = np.array([it.group for it in items])
    conditions = robustness.CONDITIONS if not args.quick else (
        "clean", "first 1.0 s", "first 2.0 s", "white 10 dB", "babble 10 dB", "reverb RT60 0.8 s")
    n_folds, n_other = (2, 20) if args.quick else (args.folds, args.n)
    every = 1 if args.quick else args.every
    libri = sorted(str(p) for p in common.data_path("librispeech").rglob("*.flac"))
    savee = [it.path for it in scan(f"savee={common.data_path('savee')}")[0]]
    if args.quick:
        libri, savee = libri[:n_other], savee[:n_other]
    folds = speaker_folds(speakers, n_folds, args.seed)
    cfg = FeatureConfig()
    with ProcessPoolExecutor(args.jobs, initializer=robustness.init_worker,
                             initargs=(str(common.data_path("librispeech")), ())) as pool:
        # the held-out clips (every N-th) under each condition: fold-independent, extracted once
        scored = np.sort(np.concatenate([te[::every] for _, te in folds]))
        cond_cues = {c: cue_table(pool, [(paths[i], None, int(i), c) for i in scored]) for c in conditions}
        print(f"[guard] conditions extracted ({time.time() - t0:.0f} s)", flush=True)
        other_sets = {**ood.synthetic_sets(n_other, args.seed + 1),
                      **ood.speech_sets([common.load_16k(p)
                                         for p in paths[scored][:n_other]], args.seed + 1)}
        other_cues = {k: cue_table(pool, [(None, y, 0, "clean") for y in v])[0] for k, v in other_sets.items()}
        unheard = {"LibriSpeech sample": cue_table(pool, [(p, None, 0, "clean") for p in libri])[0],
                   "SAVEE": cue_table(pool, [(p, None, 0, "clean") for p in savee])[0]}
        print(f"[guard] other sets extracted ({time.time() - t0:.0f} s)", flush=True)
    auc_other = {k: [] for k in other_cues}
    sweep: dict[tuple[str, float], list[float]] = {}  # (condition or set, percentile) -> share flagged per fold
    for k, (tr, te) in enumerate(folds):
        Xg, yg, _ = guard_examples(list(paths[tr]), cfg, seed=args.seed + k,
                                   **({} if args.copies is None else {"copies": args.copies}))
        params = fit_guard_examples(Xg, yg, seed=args.seed + k)
        speech_scores = SpeechGuard(params).score(Xg[yg == 1])
        at = {p: SpeechGuard({**params, "threshold": float(np.percentile(speech_scores, p))})
              for p in args.percentiles}
        guard = at[args.percentiles[0]]
        for p, g in at.items():
            for c in conditions:
                X, idx = cond_cues[c]
                sweep.setdefault((c, p), []).append(float(np.mean(~g.is_speech(X[np.isin(scored[idx], te)]))))
            for name, X in {**unheard, **other_cues}.items():
                sweep.setdefault((name, p), []).append(float(np.mean(~g.is_speech(X))))
        X, idx = cond_cues["clean"]
        clean = guard.score(X[np.isin(scored[idx], te)])
        for name, X in other_cues.items():
            auc_other[name].append(ood.auroc(guard.score(X), clean))  # speech scores higher
        print(f"[guard] fold {k + 1}/{n_folds} ({time.time() - t0:.0f} s)", flush=True)
    shipped = Recognizer.load(PRETRAINED_DIR, backend="onnx").guard
    # the main tables: the first percentile's shares
    flagged = {name: sweep[(name, args.percentiles[0])] for name in [*conditions, *unheard, *other_cues]}

    lines = ["# The speech guard (`in_domain`): speech of any speaker and channel passes, non-speech is stopped", ""]
    lines += common.header_lines("guard.py") + [
        f"- Data: {len(paths)} dev clips of {len(set(speakers))} actors; every {every}th held-out clip under each "
        f"condition ({len(scored)} clips); LibriSpeech sample {len(libri)} clips; SAVEE {len(savee)} clips; "
        f"{n_other} clips per other set", f"- Folds: {n_folds} speaker-grouped (seed {args.seed}); a guard fitted "
        f"per fold on its training actors' clips (300 clips and 3 degraded copies each, against synthetic "
        f"non-speech from `emovae.train.guard`, a generator of its own: not the sets below)",
        f"- Wall time: {time.time() - t0:.0f} s", "",
        "## Held-out dev actors under each condition (share flagged, mean over folds; target <= 0.05 down to 10 dB)",
        "", "| condition | flagged | per fold |", "|---|---|---|"]
    for c in conditions:
        lines.append(f"| {c} | {np.mean(flagged[c]):.3f} | {' / '.join(f'{v:.2f}' for v in flagged[c])} |")
    lines += ["", "## Speech it never heard (share flagged)", "",
              "| set | fold guards (mean) | shipped model's guard |", "|---|---|---|"]
    for name, X in unheard.items():
        lines.append(f"| {name} | {np.mean(flagged[name]):.3f} | {np.mean(~shipped.is_speech(X)):.3f} |")
    lines += ["", "## Non-speech and unusable speech (AUROC against the held-out clean clips; share flagged)", "",
              "| set | AUROC (mean, min over folds) | flagged, fold guards | flagged, shipped guard |",
              "|---|---|---|---|"]
    for name, X in other_cues.items():
        lines.append(f"| {name} | {np.mean(auc_other[name]):.3f} ({np.min(auc_other[name]):.3f}) | "
                     f"{np.mean(flagged[name]):.3f} | {np.mean(~shipped.is_speech(X)):.3f} |")
    if len(args.percentiles) > 1:
        ps = args.percentiles
        lines += ["", "## Thresholds compared (share flagged, mean over the fold guards; the same networks)", "",
                  "| condition or set | " + " | ".join(f"{p:g} %" for p in ps) + " |", "|---|" + "---|" * len(ps)]
        for name in [*conditions, *unheard, *other_cues]:
            lines.append(f"| {name} | " + " | ".join(f"{np.mean(sweep[(name, p)]):.3f}" for p in ps) + " |")
    text = "\n".join(lines)
    print(text)
    common.write_results(args.out or common.results_path("guard", args.quick), text)


if __name__ == "__main__":
    main()
