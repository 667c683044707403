"""Pitch trackers side by side on development clips (issue 31): the shipped default, YIN from the autocorrelation
of frames on the STFT's grid at 8 kHz (``FeatureConfig()``: pitch_method "yin-acf", pitch_decimation 2), the same at
16 kHz (pitch_decimation 1), and the YIN of the models before it (pitch_method "yin", its own 1024-sample frames).

Per clip (decoded and DC-removed as ``features.extract`` does), every tracker runs on the same loud frames (those
``extract`` hands to the tracker). Against the old YIN, pooled over frames: voicing agreement and, on frames both
call voiced, the F0 difference in cents (median, 90th percentile, gross error: beyond 20 %), the old YIN taken one
frame later (its integration window is the first half of its 1024-sample frame, so it hears about 13 ms before
the frame's centre; the others hear the centre). ``--pyin``: every tracker against librosa's pYIN (about half a
second per clip). Robustness: each tracker on the clip against itself on the clip with white noise at 10 dB SNR,
and through a telephone channel (``emovae.augment``): voicing agreement and gross error. Synthetic glides with
a known F0 at each frame centre: median absolute error. Speed: median over clips of the best of ``--repeat`` ms
per clip, the tracker alone and the whole ``features.extract``, one thread, the trackers in turn on each clip.

Clips: ``--clips`` spread over RAVDESS's 20 development actors, and ``--clips // 4`` from each of SAVEE, TESS and
EMOVO (never librispeech-sample, which is kept for checks of the model).

Usage: python benchmarks/pitch.py [--clips 100] [--repeat 3] [--pyin] [--out benchmarks/results-pitch.md]
"""

from __future__ import annotations

import argparse
import os
import time

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

import common  # noqa: E402

GROSS_CENTS = 1200 * np.log2(1.2)  # the gross pitch error of the literature: beyond 20 %


def spread(folder, n: int) -> list[str]:
    """``n`` clips spread evenly over the sorted files of a corpus folder (every speaker, every emotion)."""
    from emovae.corpus import scan

    items = sorted(scan(folder)[0], key=lambda it: it.path)
    step = max(1, len(items) // max(n, 1))
    return [it.path for it in items[::step][:n]]


def cents(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1200 * np.log2(a / b)


def best_ms(fn, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out) * 1000


class Pairs:
    """Voicing agreement and F0 differences between two trackers' (f0, voiced) over many clips."""

    def __init__(self):
        self.agree, self.n, self.diffs = 0, 0, []

    def add(self, f0a, va, f0b, vb, frames: np.ndarray) -> None:
        self.agree += int(np.sum(va[frames] == vb[frames]))
        self.n += int(frames.sum())
        both = va & vb & frames
        self.diffs.append(cents(f0a[both], f0b[both]))

    def row(self) -> str:
        d = np.abs(np.concatenate(self.diffs)) if self.diffs else np.zeros(0)
        if not d.size:
            return "| | | | |"
        return (f"{self.agree / max(self.n, 1):.3f} | {np.median(d):.1f} | {np.percentile(d, 90):.1f} | "
                f"{np.mean(d > GROSS_CENTS):.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(common.data_root()), help="folder holding the corpora")
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pyin", action="store_true")
    ap.add_argument("--out", default=str(common.results_path("pitch")))
    args = ap.parse_args()
    from emovae import audio, augment, features
    from emovae.config import FeatureConfig

    trackers = {"yin-acf 8 kHz (default)": FeatureConfig(),
                "yin-acf 16 kHz": FeatureConfig(pitch_decimation=1),
                "yin (before)": FeatureConfig(pitch_method="yin")}
    names = list(trackers)
    cfg = trackers[names[0]]
    root = args.root
    files = spread(os.path.join(root, "ravdess-speech"), args.clips)
    for corpus in ("savee", "tess", "emovo"):
        files += spread(os.path.join(root, corpus), args.clips // 4)
    load_before = os.getloadavg()
    vs_old = {k: Pairs() for k in names[:2]}
    vs_pyin = {k: Pairs() for k in names}
    noisy = {k: Pairs() for k in names}
    phone = {k: Pairs() for k in names}
    speed = {k: [] for k in names}
    speed_x = {k: [] for k in names}
    n_loud = 0

    def track(k, y, loud):
        c = trackers[k]
        fn = features.yin if c.pitch_method == "yin" else features.yin_acf
        f0, ap_ = fn(y, c, frames_mask=loud)
        return f0, loud & (ap_ < c.yin_threshold)

    for path in files:
        y = audio.load(path, cfg.sample_rate)
        y = y - np.float32(y.mean())
        energy = features.frame_energy_db(y, cfg)
        loud = (energy > cfg.silence_db) & (energy > energy.max() - cfg.trim_db)
        n_loud += int(loud.sum())
        out = {k: track(k, y, loud) for k in names}
        f0o, vo = out[names[2]]
        lt = np.zeros_like(loud)
        lt[:-1] = loud[:-1] & loud[1:]
        for k in names[:2]:  # tracker at t against the old YIN at t + 1
            f0, v = out[k]
            vs_old[k].add(f0[:-1], v[:-1], f0o[1:], vo[1:], lt[:-1])
        rng = augment.clip_rng(path, "pitch-bench")
        for deg, into in ((augment.add_noise(y, rng.standard_normal(len(y)).astype(np.float32), 10.0), noisy),
                          (augment.telephone(y, cfg.sample_rate), phone)):
            for k in names:
                f0d, vd = track(k, np.resize(deg.astype(np.float32), len(y)), loud)  # the channel's length may differ
                into[k].add(out[k][0], out[k][1], f0d, vd, loud)
        if args.pyin:
            import librosa

            f0p, vp, _ = librosa.pyin(y, fmin=cfg.f0_min, fmax=cfg.f0_max, sr=cfg.sample_rate,
                                      frame_length=1024, hop_length=cfg.hop_length)
            m = min(len(f0p), len(loud))
            for k in names:
                f0, v = out[k]
                vs_pyin[k].add(f0[:m], v[:m], f0p[:m], vp[:m], loud[:m])
        for k in names:
            c = trackers[k]
            speed[k].append(best_ms(lambda k=k: track(k, y, loud), args.repeat))
            speed_x[k].append(best_ms(lambda c=c: features.extract(y, c.sample_rate, c), args.repeat))
    glides = []
    for lo, hi in ((100, 300), (300, 100), (80, 160), (200, 500)):
        t = np.arange(int(1.5 * cfg.sample_rate)) / cfg.sample_rate
        f = lo + (hi - lo) * t / t[-1]
        phase = 2 * np.pi * np.cumsum(f) / cfg.sample_rate
        y = (0.2 * sum(np.sin(k * phase) / k for k in range(1, 8))).astype(np.float32)
        true = lo + (hi - lo) * np.clip(np.arange(1 + len(y) // cfg.hop_length) * cfg.hop_length
                                        / cfg.sample_rate / t[-1], 0, 1)
        everywhere = np.ones(len(true), bool)
        errs = [np.nanmedian(np.abs(cents(track(k, y, everywhere)[0][15:-15], true[15:-15]))) for k in names]
        glides.append(f"| glide {lo} -> {hi} Hz in 1.5 s | " + " | ".join(f"{e:.1f}" for e in errs) + " |")
    m = common.machine()
    head = "| | " + " | ".join(names) + " |"
    sep = "|---" * (len(names) + 1) + "|"
    pair_head = "| tracker | voicing agreement | median cents | 90th percentile cents | gross (> 20 %) |"
    lines = [f"# Pitch trackers ({len(files)} development clips: RAVDESS, SAVEE, TESS, EMOVO)", "",
             *common.header_lines("pitch.py", m),
             f"- Load average before / after: {' / '.join(f'{v:.2f}' for v in load_before)} ; "
             f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())}",
             f"- {n_loud} loud frames", "",
             "Against the old YIN one frame later (the frames both call voiced):", "", pair_head,
             "|---|---|---|---|---|", *(f"| {k} | {vs_old[k].row()}" for k in names[:2]), ""]
    if args.pyin:
        lines += ["Against librosa's pYIN (1024-sample frames, centred):", "", pair_head, "|---|---|---|---|---|",
                  *(f"| {k} | {vs_pyin[k].row()}" for k in names), ""]
    lines += ["Each tracker against itself on the same clip degraded (loud frames of the clean clip):", "",
              pair_head.replace("| tracker |", "| tracker, condition |"), "|---|---|---|---|---|",
              *(f"| {k}, white noise 10 dB | {noisy[k].row()}" for k in names),
              *(f"| {k}, telephone | {phone[k].row()}" for k in names), "",
              "Synthetic glides (7 harmonics), median absolute error at the frame centre, cents:", "", head, sep,
              *glides, "", f"Speed, median over clips of the best of {args.repeat}, ms per clip, one thread:", "",
              head, sep, "| tracker | " + " | ".join(f"{np.median(speed[k]):.2f}" for k in names) + " |",
              "| features.extract | " + " | ".join(f"{np.median(speed_x[k]):.2f}" for k in names) + " |", "",
              "Against the old YIN: tracker " + ", ".join(
                  f"{k} {np.median(speed[k]) / np.median(speed[names[2]]):.2f}x" for k in names[:2])
              + "; extract " + ", ".join(
                  f"{k} {np.median(speed_x[k]) / np.median(speed_x[names[2]]):.2f}x" for k in names[:2]) + "."]
    text = "\n".join(lines) + "\n"
    print(text)
    common.write_results(args.out, text)


if __name__ == "__main__":
    main()
