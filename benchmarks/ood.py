"""Out-of-domain detection: does the VAE's novelty score flag clips unlike the training speech?

In-domain: clips of held-out dev actors (speaker-grouped folds; each clip scored by the model that did not
hear its speaker). Out-of-domain sets, generated here (seeded) or with espeak-ng when installed: white and
pink noise, pure and gliding tones, music-like chords, clicks in silence, time-reversed speech, speech under
white noise at 0 and -5 dB SNR, machine speech. Per set and fold: AUROC and the false-positive rate at 95 %
true-positive rate (threshold passing 95 % of in-domain clips; FPR = share of the set passed as in-domain),
for the VAE scores and, in the same run, the classifier's maximum softmax probability and the energy score.

Usage: python benchmarks/ood.py [--folds 5] [--n 40] [--models DIR] [--out benchmarks/results-ood.md]
       python benchmarks/ood.py --quick    # smoke run: 40 clips of 4 actors, 2 folds, 5 clips per set
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import common

SR = 16000


def level(y: np.ndarray, db: float) -> np.ndarray:
    """y scaled to an RMS of ``db`` dBFS."""
    return (y / (np.sqrt(np.mean(y**2)) + 1e-12) * 10 ** (db / 20)).astype(np.float32)


def pink(n: int, rng) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=float)
    f[0] = 1
    return np.fft.irfft(spec / np.sqrt(f), n)


def synthetic_sets(n: int, seed: int, seconds: float = 3.5) -> dict[str, list[np.ndarray]]:
    """Non-speech sets, ``n`` clips each, at levels typical of the dev speech (-40..-15 dBFS)."""
    rng = np.random.default_rng(seed)
    L = int(seconds * SR)
    t = np.arange(L) / SR

    def db():
        return rng.uniform(-40, -15)

    def chord():
        notes = rng.choice([196, 220, 247, 262, 294, 330, 349, 392, 440], 3, replace=False)
        env = np.exp(-3 * (t % rng.uniform(0.3, 0.8)))
        return sum(np.sin(2 * np.pi * f * k * t) / k for f in notes for k in range(1, 6)) * env

    def glide():
        f = np.linspace(rng.uniform(80, 500), rng.uniform(600, 3000), L)
        return np.sin(2 * np.pi * np.cumsum(f) / SR)

    return {
        "white noise": [level(rng.standard_normal(L), db()) for _ in range(n)],
        "pink noise": [level(pink(L, rng), db()) for _ in range(n)],
        "pure tone": [level(np.sin(2 * np.pi * rng.uniform(80, 2000) * t), db()) for _ in range(n)],
        "gliding tone": [level(glide(), db()) for _ in range(n)],
        "music-like chords": [level(chord(), db()) for _ in range(n)],
        "clicks in silence": [level((rng.random(L) < 0.0005).astype(float) + 1e-5 * rng.standard_normal(L), db())
                              for _ in range(n)],
    }


def speech_sets(speech: list[np.ndarray], seed: int) -> dict[str, list[np.ndarray]]:
    """Sets made from held-out speech: time-reversed, and under white noise at 0 and -5 dB SNR."""
    rng = np.random.default_rng(seed)

    def noisy(y, snr):
        p = 10 * np.log10(np.mean(y**2) + 1e-12)
        return (y + level(rng.standard_normal(len(y)), p - snr)).astype(np.float32)

    return {"speech, time-reversed": [y[::-1].copy() for y in speech],
            "speech + noise, SNR 0 dB": [noisy(y, 0) for y in speech],
            "speech + noise, SNR -5 dB": [noisy(y, -5) for y in speech]}


def espeak_set(n: int) -> list[np.ndarray]:
    """Machine speech from espeak-ng (several voices and rates); empty when espeak-ng is not installed."""
    if not shutil.which("espeak-ng"):
        return []
    from emovae import audio

    sentences = ["Kids are talking by the door.", "Dogs are sitting by the door.", "The meeting starts at nine.",
                 "Please call me back tomorrow.", "I cannot believe this happened.", "What a wonderful day."]
    voices = ["en-us", "en", "en-us+f3", "en+m3", "en-us+f2", "en+m7"]
    out = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(n):
            p = Path(d) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", voices[i % len(voices)], "-s", str(130 + 10 * (i % 5)), "-w", str(p),
                            sentences[i % len(sentences)]], check=True, capture_output=True)
            out.append(level(audio.load(p, SR), -30))
    return out


def logits(model, X) -> np.ndarray:
    """The single-clip head's logits (N, C) of clips X (with the voice statistics), through the fitted
    ``network.EmotionNet``'s own steps (``scaled``, the VAE's ``encode``, ``head_inputs``, ``classifier``)."""
    import torch

    from emovae.features import model_inputs

    seq, stats = model_inputs(X, model.configs()[1].seq_len)
    net = model.net_
    with torch.no_grad():
        seq_t, stats_t = torch.from_numpy(seq), torch.from_numpy(stats)
        x, s = net.scaled(seq_t, stats_t)
        mu = net.vae.encode(x.contiguous(), s if net.vae.n_stats else None)[0]
        h, _ = net.head_inputs(mu, s, stats_t, stats_t, torch.ones_like(stats_t))  # moments feed only the adapted head
        return net.classifier(h).numpy()


def scores(model, X) -> dict[str, np.ndarray]:
    """Per-clip scores, higher = more out-of-domain."""
    X = model.prepare(X)  # the voice student's statistics appended (when the model has one)
    out = model.forward(X)
    lg = logits(model, X)
    p = np.exp(lg - lg.max(1, keepdims=True))
    if np.abs(p / p.sum(1, keepdims=True) - out["probabilities"]).max() > 1e-4:
        raise RuntimeError("the logits do not give the network's probabilities: the energy score would be wrong")
    lse = np.log(np.exp(lg - lg.max(1, keepdims=True)).sum(1)) + lg.max(1)
    return {
        "VAE novelty (stats reconstruction; shipped)": out["novelty"],
        "VAE frame reconstruction": out["recon_mse"],
        "VAE KL": out["kl"],
        "max softmax (1 - MSP)": 1 - out["probabilities"].max(1),
        "energy (-logsumexp logits)": -lse,
    }


def auroc(neg: np.ndarray, pos: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.zeros(len(neg)), np.ones(len(pos))], np.r_[neg, pos]))


def fpr_at_95(neg: np.ndarray, pos: np.ndarray) -> float:
    """Share of out-of-domain clips passed as in-domain at the threshold that passes 95 % of in-domain clips."""
    return float(np.mean(pos <= np.percentile(neg, 95)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(ap, quick="2 folds, 5 clips per set, a few epochs")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=40, help="clips per generated set (and per fold for speech sets)")
    ap.add_argument("--out", help="results file (default: benchmarks/results-ood.md)")
    ap.add_argument("--models", type=Path, metavar="DIR",
                    help="the fold models saved by accuracy.py --save-models DIR (same seed and folds) instead of "
                         "training each fold's model here")
    args = ap.parse_args()
    if args.quick:
        args.folds, args.n = 2, 5
    args.out = args.out or str(common.results_path("ood", args.quick))

    from emovae import audio
    from emovae.config import FeatureConfig
    from emovae.evaluate import speaker_folds, table_features
    from emovae.extraction import default_cache_dir, extract_dataset
    from emovae.features import extract
    from emovae.train.estimator import EmotionRecognizer

    t0 = time.time()
    cfg = FeatureConfig()
    data, cache, n_jobs, configs = args.data, default_cache_dir(), None, ()
    if args.quick:
        tmp = tempfile.mkdtemp(prefix="emovae-quick-")
        data, cache, n_jobs = common.quick_subset(args.data, tmp), Path(tmp) / "features", 1
        configs = common.quick_configs(args.seed)
    table, _ = extract_dataset(data, cfg, cache_dir=cache, n_jobs=n_jobs, progress=False)
    X = table_features(table)
    synth = synthetic_sets(args.n, args.seed)
    machine = espeak_set(args.n)
    if machine:
        synth["machine speech (espeak-ng)"] = machine
    synth_feats = {k: [extract(y, SR, cfg) for y in v] for k, v in synth.items()}
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    flags: dict[str, list[float]] = {}
    speakers, labels = table.speakers, table.labels
    for k, (tr, te) in enumerate(speaker_folds(speakers, args.folds, args.seed)):
        if args.models:
            model = common.load_fold_model(args.models, args.seed, k, np.unique(speakers[te]))
        else:
            model = EmotionRecognizer(cfg, *configs).fit([X[i] for i in tr], labels[tr], groups=speakers[tr])
        thr = model.novelty_["threshold"]
        ind = scores(model, [X[i] for i in te])
        flags.setdefault("in-domain (held-out actors)", []).append(
            float(np.mean(ind["VAE novelty (stats reconstruction; shipped)"] > thr)))
        rng = np.random.default_rng(args.seed + k)
        pick = rng.choice(te, size=min(args.n, len(te)), replace=False)
        speech = [audio.load(table.paths[i], SR) for i in pick]
        sets = dict(synth_feats)
        sets.update({name: [extract(y, SR, cfg) for y in ys] for name, ys in speech_sets(speech, args.seed + k).items()})
        for name, feats in sets.items():
            ood = scores(model, feats)
            flags.setdefault(name, []).append(float(np.mean(ood["VAE novelty (stats reconstruction; shipped)"] > thr)))
            for sc in ind:
                results.setdefault(name, {}).setdefault(sc, []).append((auroc(ind[sc], ood[sc]),
                                                                         fpr_at_95(ind[sc], ood[sc])))
        print(f"fold {k + 1}/{args.folds} done ({time.time() - t0:.0f} s)", flush=True)

    score_names = list(next(iter(results.values())))
    short = ["VAE novelty", "VAE frames", "VAE KL", "max softmax", "energy"]
    m = common.machine()
    lines = ["# Out-of-domain detection", "",
             f"Run {m['date'][:10]} on {m['node']} ({m['cores']} cores, {m['cpu']}, Python {m['python']}; emovae at "
             f"{m['commit']}); `{common.command_line('ood.py')}`; {time.time() - t0:.0f} s.", "",
             f"In-domain: held-out actors of a speaker-grouped {args.folds}-fold split of the "
             f"{len(np.unique(speakers))} dev actors, each clip "
             "scored by the fold's model. Out-of-domain: the sets below (generated in the benchmark, seeded). "
             "AUROC (1 = perfect separation, 0.5 = chance) and FPR at 95 % TPR (share of the set passed as "
             "in-domain when 95 % of in-domain clips pass), mean over folds. Scores: " +
             "; ".join(f"**{s}** = {n}" for s, n in zip(short, score_names)) + ".", "",
             "| set | " + " | ".join(f"AUROC {s}" for s in short) + " | FPR95 VAE novelty | FPR95 max softmax |",
             "|---|" + "---|" * (len(short) + 2)]
    for name, per in results.items():
        au = [np.mean([a for a, _ in per[s]]) for s in score_names]
        best = max(range(len(au)), key=lambda i: au[i])
        cells = [f"**{v:.3f}**" if i == best else f"{v:.3f}" for i, v in enumerate(au)]
        f_nov = np.mean([f for _, f in per[score_names[0]]])
        f_msp = np.mean([f for _, f in per[score_names[3]]])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {f_nov:.3f} | {f_msp:.3f} |")
    lines += ["", "At the shipped operating point (threshold = 99th percentile of the novelty of the inner "
              "validation actors' clips, stored in model.json), share of clips flagged out-of-domain:", "",
              "| set | flagged (mean over folds) |", "|---|---|"]
    lines += [f"| {k} | {np.mean(v):.3f} |" for k, v in flags.items()]
    if not machine:
        lines += ["", "Machine speech was skipped: espeak-ng is not installed (apt-get install espeak-ng)."]
    text = "\n".join(lines) + "\n"
    print(text)
    common.write_results(args.out, text)


if __name__ == "__main__":
    main()
