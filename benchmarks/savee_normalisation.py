"""Research probe (finished; result in docs/research.md section 34): which normalisation of the head's inputs
carries RAVDESS -> SAVEE? The shipped model's voice student gives the 512 voice statistics of every RAVDESS and
SAVEE clip; a balanced logistic regression is fitted on all 1200 RAVDESS clips and scored on SAVEE's 480 (argmax
over the 7 shared classes), with: no normalisation, per-utterance cepstral mean removal of the MFCC level
statistics, z-scoring per corpus, z-scoring per speaker.

    python benchmarks/savee_normalisation.py
"""
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler

import common
from emovae.extraction import extract_dataset
from emovae.runtime import load_pretrained


def rows(rec, folder):
    t, _ = extract_dataset([str(folder)], rec.feature_config, progress=False)
    voice = np.array([rec.network.voice.run(None, {"mel": np.asarray(m, np.float32)[None]})[0][0] for m in t.mels])
    return t.stats, voice, t.labels, t.speakers, list(t.stat_names)


def cmn(H, names):
    """MFCC level statistics relative to the utterance's mean MFCC (cepstral mean removal per clip)."""
    H = H.copy()
    for k in range(40):
        m = names.index(f"mfcc_{k}__mean")
        for s in ("p10", "p50", "p90"):
            H[:, names.index(f"mfcc_{k}__{s}")] -= H[:, m]
        H[:, m] = 0
    return H


def z_by(X, groups):
    X = X.copy()
    for g in np.unique(groups):
        i = groups == g
        X[i] = (X[i] - X[i].mean(0)) / (X[i].std(0) + 1e-6)
    return X


def main():
    rec = load_pretrained()
    HR, VR, yR, sR, names = rows(rec, common.data_path("ravdess"))
    HS, VS, yS, sS, _ = rows(rec, common.data_path("savee"))
    shared = sorted(set(yS))
    variants = {"voice + hand-made": (np.hstack([HR, VR]), np.hstack([HS, VS])), "voice": (VR, VS),
                "hand-made": (HR, HS),
                "voice + hand-made, MFCC mean removed per clip": (np.hstack([cmn(HR, names), VR]),
                                                                  np.hstack([cmn(HS, names), VS]))}
    for norm in ("none", "per corpus", "per speaker"):
        for name, (a, b) in variants.items():
            if norm == "per corpus":
                a, b = z_by(a, np.zeros(len(a))), z_by(b, np.zeros(len(b)))
            elif norm == "per speaker":
                a, b = z_by(a, sR), z_by(b, sS)
            out = []
            for C in (0.003, 0.01, 0.03, 0.1):
                sc = StandardScaler().fit(a)
                lr = LogisticRegression(C=C, max_iter=2000, class_weight="balanced").fit(sc.transform(a), yR)
                d = lr.decision_function(sc.transform(b))[:, [list(lr.classes_).index(c) for c in shared]]
                out.append(f"C={C}: {balanced_accuracy_score(yS, np.array(shared)[d.argmax(1)]):.3f}")
            print(f"{norm:12s} {name:48s} " + "  ".join(out), flush=True)


if __name__ == "__main__":
    main()
