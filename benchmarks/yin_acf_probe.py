"""Research probe (issue 31, docs/research.md section 36): YIN's difference function from the autocorrelation of
the STFT's own frames (``features.yin_acf``, ``FeatureConfig(pitch_method="yin-acf")``) against today's YIN
(``features.yin``, the default) on RAVDESS development clips: pitch error and speed.

Per clip (decoded and DC-removed as ``features.extract`` does), both trackers run on the same loud frames (the
frames YIN is asked for in ``extract``). Pooled over frames: voicing agreement (aperiodicity below the threshold,
the ``voiced`` column), and on frames both call voiced the F0 difference in cents (median, 90th percentile, share
beyond 50 cents, beyond 20 % -- the gross pitch error of the literature -- and near an octave), also with YIN one
frame later (YIN's integration window is the first half of its 1024-sample frame, so it hears the signal about
13 ms before the frame's centre; the autocorrelation of the centred STFT frame hears the centre). On synthetic
glides with a known F0 at each frame centre: the signed error of each tracker. ``--pyin``: also
both against librosa's pYIN (slow: about half a second per clip). Speed: median ms per clip of each tracker alone
and of ``features.extract`` with each config, one thread, the clips in turn (A, B, A, B ...), best of ``--repeat``.

Usage: python benchmarks/yin_acf_probe.py [--clips 100] [--repeat 3] [--pyin] [--out /tmp/yin-acf.md]
"""

from __future__ import annotations

import argparse
import os
import time

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

import common  # noqa: E402


def dev_clips(data: str, n: int) -> list[str]:
    """``n`` clips spread evenly over the sorted files of the corpus folder (every actor, every emotion)."""
    from emovae.corpus import scan

    items = sorted(scan(data)[0], key=lambda it: it.path)
    step = max(1, len(items) // n)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(ap)
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pyin", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from emovae import audio, features
    from emovae.config import FeatureConfig

    cfg, acf_cfg = FeatureConfig(), FeatureConfig(pitch_method="yin-acf")
    files = dev_clips(args.data, 10 if args.quick else args.clips)
    load_before = os.getloadavg()
    agree, n_loud, diffs, vs_pyin = 0, 0, [], {"yin": [], "yin-acf": []}
    agree1, n_loud1, diffs1 = 0, 0, []  # against YIN one frame later
    pyin_agree = {"yin": 0, "yin-acf": 0}
    speed = {"yin": [], "yin-acf": [], "extract yin": [], "extract yin-acf": []}
    durations = []
    for path in files:
        y = audio.load(path, cfg.sample_rate)
        y = y - np.float32(y.mean())
        durations.append(len(y) / cfg.sample_rate)
        energy = features.frame_energy_db(y, cfg)
        loud = (energy > cfg.silence_db) & (energy > energy.max() - cfg.trim_db)
        f0a, apa = features.yin(y, cfg, frames_mask=loud)
        f0b, apb = features.yin_acf(y, cfg, frames_mask=loud)
        va, vb = loud & (apa < cfg.yin_threshold), loud & (apb < cfg.yin_threshold)
        agree += int(np.sum(va[loud] == vb[loud]))
        n_loud += int(loud.sum())
        both = va & vb
        diffs.append(cents(f0b[both], f0a[both]))
        lt = loud[:-1] & loud[1:]  # acf at frame t, yin at t + 1
        agree1 += int(np.sum(vb[:-1][lt] == va[1:][lt]))
        n_loud1 += int(lt.sum())
        both1 = vb[:-1] & va[1:]
        diffs1.append(cents(f0b[:-1][both1], f0a[1:][both1]))
        if args.pyin:
            import librosa

            f0p, vp, _ = librosa.pyin(y, fmin=cfg.f0_min, fmax=cfg.f0_max, sr=cfg.sample_rate,
                                      frame_length=cfg.yin_frame_length, hop_length=cfg.hop_length)
            m = min(len(f0p), len(va))
            for name, v, f0 in (("yin", va, f0a), ("yin-acf", vb, f0b)):
                pyin_agree[name] += int(np.sum(v[:m][loud[:m]] == vp[:m][loud[:m]]))
                ok = v[:m] & vp[:m]
                vs_pyin[name].append(cents(f0[:m][ok], f0p[ok]))
        speed["yin"].append(best_ms(lambda y=y, loud=loud: features.yin(y, cfg, frames_mask=loud), args.repeat))
        speed["yin-acf"].append(best_ms(lambda y=y, loud=loud: features.yin_acf(y, cfg, frames_mask=loud), args.repeat))
        speed["extract yin"].append(best_ms(lambda y=y: features.extract(y, cfg.sample_rate, cfg), args.repeat))
        speed["extract yin-acf"].append(best_ms(lambda y=y: features.extract(y, cfg.sample_rate, acf_cfg), args.repeat))
    d = np.concatenate(diffs)
    ad = np.abs(d)
    octave = np.abs(ad - 1200) < 100
    ad1 = np.abs(np.concatenate(diffs1))
    glides = []
    for lo, hi in ((100, 300), (300, 100), (80, 160)):
        t = np.arange(int(1.5 * cfg.sample_rate)) / cfg.sample_rate
        f = lo + (hi - lo) * t / t[-1]
        phase = 2 * np.pi * np.cumsum(f) / cfg.sample_rate
        y = (0.2 * sum(np.sin(k * phase) / k for k in range(1, 8))).astype(np.float32)
        centre = np.arange(1 + len(y) // cfg.hop_length) * cfg.hop_length / cfg.sample_rate
        true = lo + (hi - lo) * np.clip(centre / t[-1], 0, 1)
        errs = [np.nanmedian(cents(fn(y, cfg)[0][15:-15], true[15:-15])) for fn in (features.yin, features.yin_acf)]
        glides.append(f"| glide {lo} -> {hi} Hz in 1.5 s: median signed error at the frame centre (cents) | yin "
                      f"{errs[0]:+.1f}, yin-acf {errs[1]:+.1f} |")
    m = common.machine()
    lines = [f"# YIN from the STFT frames' autocorrelation against YIN ({len(files)} RAVDESS dev clips)", "",
             *common.header_lines("yin_acf_probe.py", m),
             f"- Load average before / after: {' / '.join(f'{v:.2f}' for v in load_before)} ; "
             f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())}",
             f"- Clips: mean {np.mean(durations):.2f} s; {n_loud} loud frames", "",
             "| measure | value |", "|---|---|",
             f"| voicing agreement on loud frames (yin-acf vs yin) | {agree / n_loud:.3f} |",
             f"| frames both call voiced | {len(d)} |",
             f"| F0 difference, median of abs (cents) | {np.median(ad):.1f} |",
             f"| F0 difference, 90th percentile of abs (cents) | {np.percentile(ad, 90):.1f} |",
             f"| median signed difference (cents; > 0: yin-acf higher) | {np.median(d):+.1f} |",
             f"| share beyond 50 cents | {np.mean(ad > 50):.4f} |",
             f"| share beyond 20 % (gross pitch error) | {np.mean(np.abs(d) > 1200 * np.log2(1.2)):.4f} |",
             f"| share near an octave (1100-1300 cents) | {np.mean(octave):.4f} |",
             f"| against YIN one frame later: voicing agreement | {agree1 / n_loud1:.3f} |",
             f"| against YIN one frame later: median / 90th percentile of abs (cents) | {np.median(ad1):.1f} / "
             f"{np.percentile(ad1, 90):.1f} |",
             f"| against YIN one frame later: share beyond 20 % | {np.mean(ad1 > 1200 * np.log2(1.2)):.4f} |",
             *glides]
    if args.pyin:
        for name in ("yin", "yin-acf"):
            e = np.abs(np.concatenate(vs_pyin[name]))
            lines.append(f"| {name} vs pYIN: voicing agreement {pyin_agree[name] / n_loud:.3f}, median "
                         f"{np.median(e):.1f} cents, gross error {np.mean(e > 1200 * np.log2(1.2)):.4f} | |")
    lines += ["", "Speed, median over clips of the best of "
              f"{args.repeat} (ms per clip, one thread):", "", "| path | ms |", "|---|---|",
              *(f"| {k} | {np.median(v):.2f} |" for k, v in speed.items()),
              "", f"yin-acf / yin: {np.median(speed['yin-acf']) / np.median(speed['yin']):.2f} (tracker alone), "
              f"{np.median(speed['extract yin-acf']) / np.median(speed['extract yin']):.2f} (whole extract)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        common.write_results(args.out, text)


if __name__ == "__main__":
    main()
