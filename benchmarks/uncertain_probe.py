"""Throw-away probe (docs/research.md section 39): how other "uncertain" rules hold on the left-out corpus of each
leave-one-corpus-out fold model. Usage: python benchmarks/uncertain_probe.py FOLDS_DIR (loco.py's --folds).
Threshold read off each fold's held-out (training corpora left out) risk-coverage curve (0.05 grid)."""
import sys, json
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
import loco, common
from emovae.config import FeatureConfig, TrainConfig
from emovae.evaluate import folds_for, table_features
from emovae.train.estimator import EmotionRecognizer

table = loco.table_of(Path(common.data_root()), FeatureConfig(), TrainConfig(degraded_copies=0))
X = table_features(table)
rules = {"acc>=0.5 (now)": ("acc", 0.5), "acc>=0.45": ("acc", 0.45), "acc>=0.4": ("acc", 0.4),
         "acc>=0.35": ("acc", 0.35), "2x chance (0.286)": ("acc", 2 / 7), "cover 50%": ("cov", 0.5),
         "cover 80%": ("cov", 0.8)}
for k, (tr, te) in enumerate(folds_for(table, "corpus", 4, 0)):
    m = EmotionRecognizer.load(Path(sys.argv[1]) / f"seed0-fold{k}")
    curve = m.calibration_["risk_coverage"]
    p = m.predict_proba([X[i] for i in te])
    conf, hit = p.max(1), m.classes_[p.argmax(1)] == table.labels[te]
    name = table.corpora[te][0]
    print(f"{name}: all acc {hit.mean():.3f}; held-out curve {curve}")
    for r, (kind, v) in rules.items():
        if kind == "acc":
            ok = [t for t, c, a in curve if a >= v]
            t = ok[0] if ok else curve[-1][0]
        else:
            ok = [t for t, c, a in curve if c >= v]
            t = ok[-1]
        ans = conf >= t
        print(f"  {r:20s} t={t:.2f} answered {ans.mean():.2f} acc {hit[ans].mean() if ans.any() else float('nan'):.3f}")
