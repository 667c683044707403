"""Issue 7, the path toward 0.75: is the one speech encoder that ships inside a wheel a teacher worth distilling?

Resemblyzer (Apache-2.0, `pip install resemblyzer webrtcvad-wheels`; benchmark only, never a package dependency)
carries its pretrained GE2E speaker encoder (Wan et al. 2018: 40 log-mel bands at 16 kHz, a 3-layer LSTM of 256,
a linear layer to a 256-d unit embedding; 1.42 M parameters, trained for speaker verification on LibriSpeech and
VoxCeleb, never on RAVDESS) inside its wheel. It is not a self-supervised model like WavLM; it is the only
pretrained speech model a package here holds. Too big to ship (1.42 M parameters, 2.8 MB at half precision), it
could only be a teacher. This script measures what it knows about emotion on unseen speakers before anyone
builds a distillation.

Fixed 2026-11-26 03:20, before any result (section 21 of experiments.md):

- Teacher features per clip and per speed copy (1, 0.8, 0.9, 1.1, 1.2x: `emovae.audio.speed_perturb` on the
  16 kHz clip, as the package's copies), after resemblyzer's own `preprocess_wav` (level to -30 dBFS, long
  pauses cut by its VAD):
  - *embedding*: `VoiceEncoder.embed_utterance` (mean of the 1.6 s partial embeddings, unit length), 256;
  - *hidden*: mean and std over all frames of the last LSTM layer's output on the whole clip, 512.
- Heads, per actor-grouped fold (fold seeds 0-8, 45 folds, the folds of every earlier section): z-scored with
  the training fold, logistic regression (class-balanced), C chosen from (0.001, 0.01, 0.1, 1) on the inner
  actor-disjoint split (`emovae.model.inner_split`, 3 actors), trained on the clips and their speed copies;
  scored on the test clips at speed 1. Adapted mode: the same on features z-scored per speaker.
- Systems, paired by fold against the shipped recipe's thirds as the harness rebuilds them (statistics member =
  (LR + MLP) / 2 on the 981 statistics, frame CNN, log-mel CNN; the stored CNN runs):
  the teacher head alone; the shipped thirds + the teacher head as an equal fourth member (the ceiling of a
  student that learned the teacher's answers perfectly); the statistics member trained on statistics ‖ teacher
  features (the ceiling of a student that learned its features).
- Rule: distilling this teacher is worth building if the fourth member on the *embedding* (primary; *hidden* is
  secondary) raises strict UA by at least +1.0 point over the 45 folds, gains in each of the three fold draws,
  and is better on at least 60 % of the folds. Otherwise the script's numbers say how far this teacher is from
  one that would be.

    python benchmarks/teacher.py embed --out .seqdata/ge2e.npz            # about 6000 clip copies
    python benchmarks/teacher.py evaluate --teacher .seqdata/ge2e.npz --runs RUNS...
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
warnings.filterwarnings("ignore")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess-speech"
SPEEDS = (1.0, 0.8, 0.9, 1.1, 1.2)
C_GRID = (0.001, 0.01, 0.1, 1.0)
MEMBERS = ("cnn+speed+specaug+mixup", "mfccmel2d+speed+specaug+mixup")


def _embed_clip(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(speeds, 256) embeddings and (speeds, 512) hidden-state statistics of one clip."""
    import torch
    from resemblyzer import VoiceEncoder, preprocess_wav
    from resemblyzer.audio import wav_to_mel_spectrogram

    from emovae.audio import load, speed_perturb

    global _ENCODER
    if "_ENCODER" not in globals():
        torch.set_num_threads(1)
        _ENCODER = VoiceEncoder("cpu", verbose=False)
    y = load(path, 16000)
    emb, hid = [], []
    for f in SPEEDS:
        wav = preprocess_wav(speed_perturb(y, 16000, f), 16000)
        emb.append(_ENCODER.embed_utterance(wav))
        mel = torch.from_numpy(wav_to_mel_spectrogram(wav))[None]
        with torch.no_grad():
            out, _ = _ENCODER.lstm(mel)
        out = out[0].numpy()
        hid.append(np.concatenate([out.mean(0), out.std(0)]))
    return np.stack(emb), np.stack(hid)


def _split_layers(lstm) -> list:
    """The teacher's stacked LSTM as one single-layer ``torch.nn.LSTM`` per layer, same weights."""
    import torch

    layers = []
    for k in range(lstm.num_layers):
        one = torch.nn.LSTM(lstm.input_size if k == 0 else lstm.hidden_size, lstm.hidden_size, 1, batch_first=True)
        one.load_state_dict({n.replace(f"_l{k}", "_l0"): v for n, v in lstm.state_dict().items()
                             if n.endswith(f"_l{k}")})
        layers.append(one)
    return layers


def _layers_clip(path: str) -> np.ndarray:
    """(speeds, 3, 512): mean and std over frames of each LSTM layer's output (section 24: a truncated teacher)."""
    import torch
    from resemblyzer import VoiceEncoder, preprocess_wav
    from resemblyzer.audio import wav_to_mel_spectrogram

    from emovae.audio import load, speed_perturb

    global _ENCODER
    if "_ENCODER" not in globals():
        torch.set_num_threads(1)
        _ENCODER = VoiceEncoder("cpu", verbose=False)
    layers = _split_layers(_ENCODER.lstm)
    y = load(path, 16000)
    out = []
    for f in SPEEDS:
        x = torch.from_numpy(wav_to_mel_spectrogram(preprocess_wav(speed_perturb(y, 16000, f), 16000)))[None]
        per = []
        with torch.no_grad():
            for layer in layers:
                x, _ = layer(x)
                h = x[0].numpy()
                per.append(np.concatenate([h.mean(0), h.std(0)]))
        out.append(np.stack(per))
    return np.stack(out)


VOICE_VARIANTS = {"int4 10ms": (4, 160), "int4 20ms": (4, 320), "int4 30ms": (4, 480), "float 10ms": (32, 160)}


def _voice_clip(path: str) -> np.ndarray:
    """(variants, speeds, 512): the package's voice statistics (``emovae.voice``: level, speech span, 40 mel
    bands, the encoder's first two layers) of one clip and its speed copies, per encoder file and frame step."""
    from emovae import voice
    from emovae.audio import load, speed_perturb
    from emovae.config import FeatureConfig
    from emovae.features import frame_energy_db, speech_span

    cfg = FeatureConfig()
    y = load(path, 16000)
    out = np.zeros((len(VOICE_VARIANTS), len(SPEEDS), 512), np.float32)
    for j, f in enumerate(SPEEDS):
        c = speed_perturb(y, 16000, f) if f != 1.0 else y
        span = speech_span(frame_energy_db(c, cfg), cfg)
        c = voice.level(c[span.start * cfg.hop_length: span.stop * cfg.hop_length])
        for i, (bits, hop) in enumerate(VOICE_VARIANTS.values()):
            mel = voice.encoder_mel(c)[:: hop // voice.HOP]
            out[i, j] = voice._session(f"/tmp/voice{bits}.onnx").run(None, {"mel": mel[None]})[0][0]
    return out


def _over_clips(fn, jobs: int) -> tuple[list, list, float]:
    """``fn`` on every dev clip's path in ``jobs`` processes: (utterances, results in order, seconds)."""
    from concurrent.futures import ProcessPoolExecutor

    from emovae.data import scan

    utterances, _ = scan(DATA)
    t0 = time.time()
    with ProcessPoolExecutor(jobs) as pool:
        res = list(pool.map(fn, [u.path for u in utterances], chunksize=8))
    return utterances, res, time.time() - t0


def _save_per_clip(out: str, utterances: list, **arrays) -> None:
    """An .npz of per-clip arrays with the speeds, labels and actors that the evaluations check."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays, speeds=np.array(SPEEDS), labels=np.array([u.label for u in utterances]),
                        actors=np.array([u.actor for u in utterances]))


def cmd_voice_data(args) -> int:
    utterances, res, seconds = _over_clips(_voice_clip, args.jobs)
    _save_per_clip(args.out, utterances, voice=np.stack(res, axis=2), variants=np.array(list(VOICE_VARIANTS)))
    print(f"{len(utterances)} clips x {len(SPEEDS)} speeds x {len(VOICE_VARIANTS)} variants in {seconds:.0f} s")
    return 0


def cmd_embed_layers(args) -> int:
    utterances, res, seconds = _over_clips(_layers_clip, args.jobs)
    layers = np.stack(res, axis=1).astype(np.float32)  # (speeds, N, layers, 512)
    _save_per_clip(args.out, utterances, layers=layers)
    print(f"{len(utterances)} clips x {len(SPEEDS)} speeds x {layers.shape[2]} layers in {seconds:.0f} s")
    return 0


def cmd_embed(args) -> int:
    utterances, res, seconds = _over_clips(_embed_clip, args.jobs)
    _save_per_clip(args.out, utterances, embedding=np.stack([r[0] for r in res], axis=1).astype(np.float32),
                   hidden=np.stack([r[1] for r in res], axis=1).astype(np.float32))  # (speeds, N, 256 / 512)
    print(f"{len(utterances)} clips x {len(SPEEDS)} speeds in {seconds:.0f} s ({args.jobs} processes)")
    return 0


def _lr(X: np.ndarray, y: np.ndarray, Xte: np.ndarray, C: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, class_weight="balanced", max_iter=3000).fit(X, y).predict_proba(Xte)


def _teacher_head(T: np.ndarray, y: np.ndarray, actors: np.ndarray, tr: np.ndarray, te: np.ndarray,
                  seed: int, grid: tuple = C_GRID, mlp: int = 0) -> tuple[np.ndarray, float]:
    """Teacher LR test probabilities: C chosen on the inner split, refitted on the training fold (all copies)."""
    from sklearn.metrics import balanced_accuracy_score as bas

    from emovae.model import inner_split

    itr, iva = inner_split(actors[tr], 3, seed)
    itr, iva = tr[itr], tr[iva]

    def fit(rows, test_rows, C):
        X = T[:, rows].reshape(-1, T.shape[-1])
        m, s = X.mean(0), X.std(0) + 1e-9
        return _lr((X - m) / s, np.tile(y[rows], len(T)), (T[0, test_rows] - m) / s, C)

    scores = [bas(y[iva], fit(itr, iva, C).argmax(1)) for C in grid]
    C = grid[int(np.argmax(scores))]
    p = fit(tr, te, C)
    if mlp:  # section 25's S3: averaged with an MLP on the same rows
        from sklearn.neural_network import MLPClassifier

        X = T[:, tr].reshape(-1, T.shape[-1])
        m, s = X.mean(0), X.std(0) + 1e-9
        net = MLPClassifier(hidden_layer_sizes=(mlp,), alpha=1.0, max_iter=200, random_state=seed)
        p = (p + net.fit((X - m) / s, np.tile(y[tr], len(T))).predict_proba((T[0, te] - m) / s)) / 2
    return p, C


def _fold(job: tuple) -> tuple:
    from sklearn.metrics import balanced_accuracy_score as bas
    from sklearn.neural_network import MLPClassifier

    seed, tr, te, y, actors, modes, cnn = job
    out = [seed]
    for stats, teachers in modes:  # strict, adapted
        X = stats[:, tr].reshape(-1, stats.shape[-1])
        m, s = X.mean(0), X.std(0) + 1e-9
        yt = np.tile(y[tr], len(stats))
        Xte = (stats[0, te] - m) / s
        p_lr = _lr((X - m) / s, yt, Xte, 0.01)
        mlp = MLPClassifier(hidden_layer_sizes=(128,), alpha=1.0, max_iter=200, random_state=seed)
        p_stat = (p_lr + mlp.fit((X - m) / s, yt).predict_proba(Xte)) / 2
        out.append(bas(y[te], (p_stat + cnn).argmax(1)))
        for T in teachers:
            p_t, C = _teacher_head(T, y, actors, tr, te, seed)
            J = np.concatenate([stats, T], axis=-1)
            XJ = J[:, tr].reshape(-1, J.shape[-1])
            mj, sj = XJ.mean(0), XJ.std(0) + 1e-9
            p_j = _lr((XJ - mj) / sj, yt, (J[0, te] - mj) / sj, 0.01)
            out += [bas(y[te], p_t.argmax(1)), bas(y[te], (p_stat + cnn + p_t).argmax(1)),
                    bas(y[te], (p_j + cnn).argmax(1)), C]
    return tuple(out)


VOICE_GRID = (0.001, 0.003, 0.01, 0.03)


def _voice_fold(job: tuple) -> tuple:
    """Section 25's systems on one fold: S0 (statistics (LR + MLP 64) / 2), then per voice variant S1 (voice LR),
    S2 (LR on statistics ‖ voice), S3 ((S2 + MLP 64) / 2), strict then adapted; plus S2 / S3 in thirds with the
    CNNs where their runs are given."""
    from sklearn.metrics import balanced_accuracy_score as bas
    from sklearn.neural_network import MLPClassifier

    seed, tr, te, y, actors, modes, cnn, systems = job
    out = [seed]
    for stats, voices in modes:
        X = stats[:, tr].reshape(-1, stats.shape[-1])
        m, s = X.mean(0), X.std(0) + 1e-9
        yt = np.tile(y[tr], len(stats))
        Xte = (stats[0, te] - m) / s
        mlp = MLPClassifier(hidden_layer_sizes=(64,), alpha=1.0, max_iter=200, random_state=seed)
        p0 = (_lr((X - m) / s, yt, Xte, 0.01) + mlp.fit((X - m) / s, yt).predict_proba(Xte)) / 2
        out.append(bas(y[te], p0.argmax(1)))
        for V in voices:
            row = [np.nan] * 8
            if "S1" in systems:
                p1 = _teacher_head(V, y, actors, tr, te, seed, VOICE_GRID)[0]
                row[0] = bas(y[te], p1.argmax(1))
                row[6] = bas(y[te], (p1 + p0).argmax(1))  # S4: late fusion with the statistics member
                if cnn is not None:
                    row[7] = bas(y[te], (p1 + p0 + cnn).argmax(1))  # S5: quarters with the two CNNs
            J = np.concatenate([stats, V], axis=-1)
            if "S2" in systems or "S3" in systems:
                p2, _ = _teacher_head(J, y, actors, tr, te, seed, VOICE_GRID)
                row[1] = bas(y[te], p2.argmax(1))
                if cnn is not None:
                    row[3] = bas(y[te], (p2 + cnn).argmax(1))
            if "S3" in systems:
                p3, _ = _teacher_head(J, y, actors, tr, te, seed, VOICE_GRID, mlp=64)
                row[2] = bas(y[te], p3.argmax(1))
                if cnn is not None:
                    row[4] = bas(y[te], (p3 + cnn).argmax(1))
            out += row
    return tuple(out)


def cmd_voice_eval(args) -> int:
    from concurrent.futures import ProcessPoolExecutor

    from emovae.evaluate import actor_folds
    from emovae.features import speaker_normalize
    from sequence import fold_draws, load_runs

    with np.load(args.data) as z:
        stats, y, actors = z["stats"].astype(np.float64), z["labels"], z["actors"]
    with np.load(args.voice) as z:
        if list(z["actors"]) != list(actors) or list(z["labels"]) != list(y):
            raise SystemExit("voice file and data file list the clips in different orders")
        names = list(z["variants"])
        voices = [z["voice"][names.index(v)].astype(np.float64) for v in args.variants]
    by = load_runs(args.runs)[0] if args.runs else {}

    def norm(a):
        return np.stack([speaker_normalize(a[c], actors) for c in range(len(a))]).astype(np.float64)

    modes = [(stats, voices), (norm(stats), [norm(v) for v in voices])]
    jobs = []
    for seed in args.seeds:
        for k, (tr, te) in enumerate(actor_folds(actors, 5, seed)):
            keys = [(c, seed, k) for c in MEMBERS]
            cnn = sum(by[key][0] for key in keys) if all(key in by for key in keys) else None
            jobs.append((seed, tr, te, y, actors, modes, cnn, tuple(args.systems)))
    t0 = time.time()
    with ProcessPoolExecutor(args.jobs) as pool:
        r = np.array(list(pool.map(_voice_fold, jobs)), dtype=np.float64)
    print(f"- {time.strftime('%Y-%m-%d %H:%M')}; {platform.platform()}; {os.cpu_count()} cores; "
          f"{time.time() - t0:.0f} s; voice {args.voice}; runs {' '.join(args.runs or ['none'])}\n")
    print("| mode | system | fold seeds | UA | paired vs S0 | folds better |")
    print("|---|---|---|---|---|---|")
    labels = ("S1 voice LR", "S2 LR on statistics ‖ voice", "S3 (S2 + MLP 64) / 2", "S2 + frame CNN + log-mel CNN",
              "S3 + frame CNN + log-mel CNN", "", "S4 (S1 + S0) / 2", "S5 S1 + S0 + frame CNN + log-mel CNN")
    width = 1 + 8 * len(voices)
    for mi, mode in enumerate(("strict", "adapted")):
        base = 1 + width * mi
        rows = [("S0 statistics (LR + MLP 64) / 2", base)]
        for vi, v in enumerate(args.variants):
            rows += [(f"{v}: {lab}", base + 1 + 8 * vi + j) for j, lab in enumerate(labels) if lab]
        for name, col in rows:
            for group in fold_draws(args.seeds):
                g = r[np.isin(r[:, 0], group)]
                g = g[~np.isnan(g[:, col])]
                if not len(g):
                    continue
                diff = g[:, col] - g[:, base]
                print(f"| {mode} | {name} | {','.join(map(str, group))} | {g[:, col].mean():.3f} | "
                      f"{diff.mean():+.4f} ± {diff.std():.4f} | {int((diff > 0).sum())}/{len(diff)} |", flush=True)
    return 0


def cmd_evaluate(args) -> int:
    from concurrent.futures import ProcessPoolExecutor

    from emovae.evaluate import actor_folds
    from emovae.features import speaker_normalize
    from sequence import fold_draws, load_runs

    with np.load(args.data) as z:
        stats, y, actors = z["stats"].astype(np.float64), z["labels"], z["actors"]
    with np.load(args.teacher) as z:
        if list(z["actors"]) != list(actors) or list(z["labels"]) != list(y):
            raise SystemExit("teacher file and data file list the clips in different orders")
        if "layers" in z.files:  # section 24: one teacher per chosen LSTM layer
            teachers = {f"layer {k}": z["layers"][:, :, k - 1].astype(np.float64) for k in args.layers}
        else:
            teachers = {k: z[k].astype(np.float64) for k in ("embedding", "hidden")}
    by, _, _ = load_runs(args.runs)

    def norm(a):
        return np.stack([speaker_normalize(a[c], actors) for c in range(len(a))]).astype(np.float64)

    modes = [(stats, list(teachers.values())), (norm(stats), [norm(t) for t in teachers.values()])]
    jobs = [(seed, tr, te, y, actors, modes, sum(by[(c, seed, k)][0] for c in MEMBERS))
            for seed in args.seeds for k, (tr, te) in enumerate(actor_folds(actors, 5, seed))]
    t0 = time.time()
    with ProcessPoolExecutor(args.jobs) as pool:
        r = np.array(list(pool.map(_fold, jobs)))
    print(f"- {time.strftime('%Y-%m-%d %H:%M')}; {platform.platform()}; {os.cpu_count()} cores; "
          f"{time.time() - t0:.0f} s; runs {' '.join(args.runs)}\n")
    print("| mode | system | fold seeds | UA | paired vs thirds | folds better |")
    print("|---|---|---|---|---|---|")
    width = 1 + 4 * len(teachers)
    for mi, mode in enumerate(("strict", "adapted")):
        base = 1 + width * mi
        rows = [("shipped thirds (statistics (LR + MLP) / 2, frame CNN, log-mel CNN)", base)]
        for ti, name in enumerate(teachers):
            b = base + 1 + 4 * ti
            rows += [(f"{name}: teacher LR alone", b), (f"{name}: thirds + teacher LR as a fourth member", b + 1),
                     (f"{name}: thirds, statistics LR on statistics ‖ teacher", b + 2)]
        for name, col in rows:
            for group in fold_draws(args.seeds):
                g = r[np.isin(r[:, 0], group)]
                diff = g[:, col] - g[:, base]
                print(f"| {mode} | {name} | {','.join(map(str, group))} | {g[:, col].mean():.3f} | "
                      f"{diff.mean():+.4f} ± {diff.std():.4f} | {int((diff > 0).sum())}/{len(diff)} |", flush=True)
        for ti, name in enumerate(teachers):
            cs = r[:, base + 4 + 4 * ti]
            print(f"\n{mode}, {name}: C chosen on the inner split: "
                  + ", ".join(f"{c:g} x{int((cs == c).sum())}" for c in C_GRID))
        print()
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("embed")
    p.add_argument("--out", default=".seqdata/ge2e.npz")
    p.add_argument("--jobs", type=int, default=os.cpu_count())
    p = sub.add_parser("embed-layers")
    p.add_argument("--out", default=".seqdata/ge2e-layers.npz")
    p.add_argument("--jobs", type=int, default=os.cpu_count())
    p = sub.add_parser("voice-data", help="section 25: the package's voice statistics per encoder variant")
    p.add_argument("--out", default=".seqdata/voice.npz")
    p.add_argument("--jobs", type=int, default=os.cpu_count())
    p = sub.add_parser("voice-eval", help="section 25's systems S0-S3 on the voice statistics")
    p.add_argument("--data", default=".seqdata/seq64.npz")
    p.add_argument("--voice", default=".seqdata/voice.npz")
    p.add_argument("--variants", nargs="+", default=["int4 10ms"])
    p.add_argument("--systems", nargs="+", default=["S1", "S2", "S3"], choices=["S1", "S2", "S3"])
    p.add_argument("--runs", nargs="*", default=[])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5, 6, 7, 8])
    p.add_argument("--jobs", type=int, default=os.cpu_count())
    p = sub.add_parser("evaluate")
    p.add_argument("--data", default=".seqdata/seq64.npz")
    p.add_argument("--teacher", default=".seqdata/ge2e.npz")
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--layers", nargs="+", type=int, default=[1, 2],
                   help="with a file from embed-layers: the LSTM layers whose statistics are teachers")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5, 6, 7, 8])
    p.add_argument("--jobs", type=int, default=os.cpu_count())
    args = ap.parse_args(argv)
    return {"embed": cmd_embed, "embed-layers": cmd_embed_layers, "evaluate": cmd_evaluate,
            "voice-data": cmd_voice_data, "voice-eval": cmd_voice_eval}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
