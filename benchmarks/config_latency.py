"""Parameters, size and end-to-end latency of emovae's configurations (issue 7: the parameters and latency
columns of benchmarks/experiments.md's summary table).

Each ablation of the shipped model (no log-mel CNN, no CNN, no latent) is trained as the shipped one was (all
dev clips, seed 0, the four speed copies), saved and exported like ``emovae train`` does, into a temporary
folder; the shipped model is used as it ships. Then every model predicts the same clips from FLAC through
onnxruntime on one thread, the models taking turns clip by clip (the order rotating), so that the machine's load
falls on all of them alike. Reported: parameters, bytes on disk, p50 / p90 ms per clip, and p50 relative to the
shipped model's in the same run.

Usage: python benchmarks/config_latency.py [--limit 400] [--out benchmarks/results-config-latency.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ravdess-speech"
VARIANTS = {"emovae (no log-mel CNN)": {"mel_cnn": False},
            "emovae (no CNN)": {"cnn_channels": 0, "mel_cnn": False},
            "emovae (no latent)": {"use_latent": False}}


def train_variant(table, classifier: dict, out: Path) -> float:
    """Fit one configuration on the whole table as ``emovae train`` does and write its model folder; seconds."""
    from emovae.config import ClassifierConfig, FeatureConfig, TrainConfig, VAEConfig
    from emovae.data import EMOTIONS
    from emovae.evaluate import table_features
    from emovae.export import export_model_dir
    from emovae.model import WEIGHTS_FILE, EmotionRecognizer
    from emovae.runtime import fit_latent_map

    t0 = time.perf_counter()
    X = table_features(table)
    model = EmotionRecognizer(FeatureConfig(), VAEConfig(), ClassifierConfig(**classifier), TrainConfig(),
                              progress=False)
    model.fit(X, table.labels, groups=table.actors, augmented=table.augmented)
    model.extra_ = {"latent_map": fit_latent_map(model.transform(X), [EMOTIONS[i] for i in table.labels])}
    model.save(out)
    export_model_dir(model, out)
    (out / WEIGHTS_FILE).unlink()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--limit", type=int, default=400, help="clips to time (every third file of the sorted list)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results-config-latency.md"))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from emovae.config import FeatureConfig, TrainConfig
    from emovae.extraction import default_cache_dir, extract_dataset
    from emovae.runtime import PRETRAINED_DIR, Recognizer

    t_start = time.time()
    table, _ = extract_dataset(args.data, FeatureConfig(), cache_dir=default_cache_dir(), progress=False)
    table.augment(TrainConfig().speed_perturb, cache_dir=default_cache_dir(), progress=False)
    tmp = Path(tempfile.mkdtemp(prefix="emovae-configs-"))
    dirs, fit_s = {"emovae (shipped)": PRETRAINED_DIR}, {}
    for name, classifier in VARIANTS.items():
        dirs[name] = tmp / name.replace(" ", "_").replace("(", "").replace(")", "")
        fit_s[name] = train_variant(table, classifier, dirs[name])
        print(f"{name}: trained in {fit_s[name]:.0f} s", flush=True)

    files = sorted(str(p) for p in Path(args.data).rglob("*.flac"))[::3][: args.limit]
    recs = {name: Recognizer.load(d, backend="onnx", threads=1) for name, d in dirs.items()}
    for rec in recs.values():  # warm-up
        rec.predict_file(files[0])
    names = list(recs)
    ms: dict[str, list[float]] = {n: [] for n in names}
    for i, f in enumerate(files):
        for n in names[i % len(names):] + names[: i % len(names)]:
            t0 = time.perf_counter()
            recs[n].predict_file(f)
            ms[n].append((time.perf_counter() - t0) * 1000)

    def size(d: Path) -> int:
        return sum((d / f).stat().st_size for f in ("model.onnx", "model.json"))

    ref = float(np.median(ms["emovae (shipped)"]))
    lines = [
        "# Parameters, size and latency of emovae's configurations",
        "",
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.platform()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; one onnxruntime thread per model",
        f"- Command: `python benchmarks/config_latency.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
        .rstrip("` ") + "`",
        f"- {len(files)} clips (every third dev file), FLAC decode to probabilities, the models taking turns clip "
        f"by clip; the ablations trained here as the shipped model was (all dev clips, seed 0, speed copies): "
        + ", ".join(f"{n} {s:.0f} s" for n, s in fit_s.items()) + f"; whole run {time.time() - t_start:.0f} s",
        "",
        "| configuration | parameters | model.onnx + model.json bytes | p50 ms | p90 ms | p50 / shipped p50 |",
        "|---|---|---|---|---|---|",
    ]
    for n in names:
        meta = json.loads((dirs[n] / "model.json").read_text())
        params = meta.get("n_parameters", "?")
        a = np.array(ms[n])
        lines.append(f"| {n} | {params:,} | {size(dirs[n]):,} | {np.median(a):.2f} | {np.percentile(a, 90):.2f} | "
                     f"{np.median(a) / ref:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
