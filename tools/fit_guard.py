"""Fit the speech guard (``emovae.guard``) of an existing model folder on that model's own training clips and
write it into its model.json, as ``emovae train`` does for new models. Used once for the shipped model, trained
before the guard existed (commit 319134b); the data must hold exactly the speakers model.json says it was trained on.

    python tools/fit_guard.py --model src/emovae/pretrained --data ../shared/data/ravdess-speech
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    from emovae import corpus
    from emovae.config import FeatureConfig, TrainConfig, from_dict
    from emovae.modelfile import CONFIG_FILE, read_model_json
    from emovae.train.guard import fit_guard

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model folder")
    ap.add_argument("--data", required=True, action="append", help="the model's training data (corpus spec)")
    args = ap.parse_args(argv)
    meta = read_model_json(args.model)
    items, problems = corpus.scan_all(args.data)
    td = meta.get("training_data") or {}
    trained_on = set(td["speakers"]) if "speakers" in td else {f"ravdess/{a:02d}" for a in td.get("actors", [])}
    found = {it.group for it in items}
    if found != trained_on:
        print(f"the data's speakers ({len(found)}) are not the model's training speakers ({len(trained_on)})",
              file=sys.stderr)
        return 2
    fcfg = from_dict(FeatureConfig, meta["feature_config"])
    seed = from_dict(TrainConfig, meta.get("train_config") or {}).seed
    meta["guard"] = fit_guard([it.path for it in items], fcfg, seed=seed)
    path = Path(args.model) / CONFIG_FILE
    path.write_text(json.dumps(meta, separators=(",", ":")))
    g = meta["guard"]
    print(f"{path}: guard fitted on {g['fitted_on']}; threshold {g['threshold']:.4f}, synthetic non-speech passed "
          f"{g['non_speech_passed']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
