"""Fit the arousal/valence heads of an existing model folder on that model's own training clips and copies (its
representation and emotion heads unchanged), as ``emovae train`` does for new models, then export it again. Used
once for the shipped model, trained before the heads existed; the data must hold exactly the speakers model.json
says it was trained on, with the model's own label map.

    python tools/fit_dimensions.py --model src/emovae/pretrained --data ../shared/data/ravdess-speech \
        --data ../shared/data/savee --data ../shared/data/tess --data ../shared/data/emovo
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    from emovae.config import FeatureConfig, TrainConfig, from_dict
    from emovae.evaluate import table_features
    from emovae.extraction import default_cache_dir, extract_dataset
    from emovae.modelfile import CONFIG_FILE, WEIGHTS_FILE, read_model_json
    from emovae.train.estimator import EmotionRecognizer, torch_threads
    from emovae.train.export import export_model_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model folder (written in place)")
    ap.add_argument("--data", required=True, action="append", help="the model's training data (corpus spec)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    meta = read_model_json(args.model)
    td = meta.get("training_data") or {}
    fcfg = from_dict(FeatureConfig, meta["feature_config"])
    tcfg = from_dict(TrainConfig, meta.get("train_config") or {})
    table, problems = extract_dataset(args.data, fcfg, mapping=td.get("label_map") or None,
                                      cache_dir=default_cache_dir(), progress=False)
    if problems or {str(s) for s in table.speakers} != set(td.get("speakers", [])):
        print(f"the data ({len(set(table.speakers))} speakers, {len(problems)} problems) is not the model's training "
              f"data ({len(td.get('speakers', []))} speakers)", file=sys.stderr)
        return 2
    table = table.augment(tcfg.speed_perturb, degraded=tcfg.degraded_copies, cache_dir=default_cache_dir(),
                          progress=False)
    model = EmotionRecognizer.load(args.model)
    with torch_threads(1):
        model.fit_dimensions(table_features(table), table.labels, groups=table.speakers, augmented=table.augmented,
                             corpora=table.corpora, dimensions=table.dimension_targets)
    saved = json.loads((Path(args.model) / CONFIG_FILE).read_text())
    model.metrics_ = saved.get("metrics", {})
    model.extra_ = {k: saved[k] for k in ("training_data", "latent_map", "guard", "voice") if k in saved}
    model.save(args.model)
    export_model_dir(model, args.model)
    (Path(args.model) / WEIGHTS_FILE).unlink()
    d = model.dimensions_
    print(f"arousal/valence heads fitted in {time.perf_counter() - t0:.0f} s: penalties {d['alpha']}, concordance "
          f"on left-out data {d['concordance_held_out']} ({d['fitted_on']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
