"""Parameters, size and end-to-end latency of emovae's configurations (issue 7: the parameters and latency
columns of benchmarks/experiments.md's summary table).

Each ablation of the shipped model (no latent; no voice student; the previous model, hand-made statistics with
MLPs and two CNNs) is trained as the shipped one was (all dev clips, seed 0, the four speed copies), saved and exported like ``emovae train`` does, into a temporary
folder; the shipped model is used as it ships. Then every model predicts the same clips from FLAC through
onnxruntime on one thread, the models taking turns clip by clip in a random order, so that the machine's load,
and what the previous call left in the caches, falls on all of them alike (a fixed rotation put the shipped model
after the peer four times in five, which cost it about 0.7 ms per clip); the peer, openSMILE eGeMAPSv02 + RBF SVM (fitted on the timed clips, as in
benchmarks/latency.py), takes its turn too when opensmile is installed. Reported: parameters, bytes on disk,
p50 / p90 ms per clip, p50 relative to the shipped model's and the peer's in the same run.

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
VARIANTS = {"emovae (no latent)": ({}, {"use_latent": False}),  # (FeatureConfig, ClassifierConfig) overrides
            "emovae (no voice student)": ({"voice": 0}, {}),
            "previous model": ({"voice": 0}, {"cnn_channels": 64, "mel_cnn": True, "stats_mlp": 64, "adapted_mlp": 64})}


PEER = "openSMILE eGeMAPSv02 + SVM (peer)"


def egemaps_svm(files: list[str]):
    """The peer's per-clip path (``peers.egemaps_svm_path``), or None without opensmile."""
    import importlib.util

    if importlib.util.find_spec("opensmile") is None:
        return None
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import peers

    return peers.egemaps_svm_path(files)


def train_variant(table, features: dict, classifier: dict, out: Path) -> float:
    """Fit one configuration on the whole table as ``emovae train`` does and write its model folder; seconds."""
    from emovae.config import ClassifierConfig, FeatureConfig, TrainConfig, VAEConfig
    from emovae.data import EMOTIONS
    from emovae.evaluate import table_features
    from emovae.export import export_model_dir
    from emovae.model import WEIGHTS_FILE, EmotionRecognizer
    from emovae.runtime import fit_latent_map

    t0 = time.perf_counter()
    X = table_features(table)
    model = EmotionRecognizer(FeatureConfig(**features), VAEConfig(), ClassifierConfig(**classifier), TrainConfig(),
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
    for name, (features, classifier) in VARIANTS.items():
        dirs[name] = tmp / name.replace(" ", "_").replace("(", "").replace(")", "")
        fit_s[name] = train_variant(table, features, classifier, dirs[name])
        print(f"{name}: trained in {fit_s[name]:.0f} s", flush=True)

    files = sorted(str(p) for p in Path(args.data).rglob("*.flac"))[::3][: args.limit]
    paths = {name: Recognizer.load(d, backend="onnx", threads=1).predict_file for name, d in dirs.items()}
    peer = egemaps_svm(files)
    if peer is not None:
        paths[PEER] = peer
    for fn in paths.values():  # warm-up
        fn(files[0])
    names = list(paths)
    ms: dict[str, list[float]] = {n: [] for n in names}
    order = np.random.default_rng(0)
    for f in files:  # a fresh random order per clip: each path follows each other one equally often on average
        for n in order.permutation(names):
            t0 = time.perf_counter()
            paths[n](f)
            ms[n].append((time.perf_counter() - t0) * 1000)

    def size(d: Path) -> int:
        return sum((d / f).stat().st_size for f in ("model.onnx", "model.json", "voice.onnx") if (d / f).exists())

    def parameters(d: Path) -> int:
        """The network's parameters (model.json) plus the voice student's (its graph's initializers)."""
        n = json.loads((d / "model.json").read_text()).get("n_parameters", 0)
        if (d / "voice.onnx").exists():
            import onnx

            n += sum(int(np.prod(t.dims)) for t in onnx.load(str(d / "voice.onnx")).graph.initializer)
        return n

    ref = float(np.median(ms["emovae (shipped)"]))
    lines = [
        "# Parameters, size and latency of emovae's configurations",
        "",
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.platform()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; one onnxruntime thread per model",
        f"- Command: `python benchmarks/config_latency.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
        .rstrip("` ") + "`",
        f"- {len(files)} clips (every third dev file), FLAC decode to probabilities, the paths taking turns clip "
        f"by clip in a random order; the ablations trained here as the shipped model was (all dev clips, seed 0, speed copies): "
        + ", ".join(f"{n} {s:.0f} s" for n, s in fit_s.items()) + f"; whole run {time.time() - t_start:.0f} s",
        "",
        "| configuration | parameters (with the voice student's) | model folder bytes | p50 ms | p90 ms | p50 / shipped p50 | "
        "peer p50 / p50 |",
        "|---|---|---|---|---|---|---|",
    ]
    peer_p50 = float(np.median(ms[PEER])) if PEER in ms else float("nan")
    for n in names:
        a = np.array(ms[n])
        if n == PEER:
            params, nbytes = "—", "—"
        else:
            params = f"{parameters(dirs[n]):,}"
            nbytes = f"{size(dirs[n]):,}"
        lines.append(f"| {n} | {params} | {nbytes} | {np.median(a):.2f} | {np.percentile(a, 90):.2f} | "
                     f"{np.median(a) / ref:.3f} | {peer_p50 / np.median(a):.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
