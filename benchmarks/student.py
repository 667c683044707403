"""Issue 7, section 26 of experiments.md: can a small recurrent student learn the GE2E teacher's second layer?

Sections 24-25 found that the mean and std over frames of the second LSTM layer of Resemblyzer's GE2E speaker
encoder carry emotion across speakers (a linear head alone: 0.69-0.70 strict UA), but the two layers (830 k
parameters, 5 ms per clip) do not fit the 1 MB and latency budgets, and 4-bit weights lose most of the gain. This
script measures a student: a one-layer LSTM of H units on the log of the same 40 mel bands, with a linear map to
256, trained to reproduce the teacher's second-layer output frame by frame (mean squared error on the z-scored
units), per actor-grouped fold on the training actors' clips and speed copies only (the test speakers' audio is
never seen). Its 512 statistics (mean and std over frames of the predicted 256) then feed the same heads as the
teacher's.

    python benchmarks/student.py data --out .devdata/encmel.npz      # here: mel bands of every clip copy
    python benchmarks/student.py run --mel .devdata/encmel.npz ...     # on a GPU machine (or CPU, slowly)
"""

from __future__ import annotations

import argparse
import json
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
DB_RANGE = 90.0  # each copy's log-mel is stored as uint8 over [max - 90 dB, max]


def _clip_mels(path: str) -> list[np.ndarray]:
    """uint8 log-mel (frames, 40) and its top in dB, per speed, as the package's voice statistics would see it."""
    from emovae import voice
    from emovae.audio import load, speed_perturb
    from emovae.config import FeatureConfig
    from emovae.features import frame_energy_db, speech_span

    cfg = FeatureConfig()
    y = load(path, 16000)
    out = []
    for f in SPEEDS:
        c = speed_perturb(y, 16000, f) if f != 1.0 else y
        span = speech_span(frame_energy_db(c, cfg), cfg)
        mel = voice.encoder_mel(voice.level(c[span.start * cfg.hop_length: span.stop * cfg.hop_length]))
        db = 10 * np.log10(mel + 1e-10)
        top = float(db.max())
        out.append((np.round(np.clip((db - top + DB_RANGE) / DB_RANGE, 0, 1) * 255).astype(np.uint8), top))
    return out


def cmd_data(args) -> int:
    from concurrent.futures import ProcessPoolExecutor

    from emovae.data import scan

    utterances, _ = scan(DATA)
    t0 = time.time()
    with ProcessPoolExecutor(args.jobs) as pool:
        res = list(pool.map(_clip_mels, [u.path for u in utterances], chunksize=8))
    mels = [res[i][j][0] for j in range(len(SPEEDS)) for i in range(len(res))]  # speed-major: copy j, clip i
    tops = np.array([res[i][j][1] for j in range(len(SPEEDS)) for i in range(len(res))], np.float32)
    lengths = np.array([len(m) for m in mels])
    np.savez_compressed(args.out, q=np.concatenate(mels), lengths=lengths, tops=tops, speeds=np.array(SPEEDS),
                        labels=np.array([u.label for u in utterances]), actors=np.array([u.actor for u in utterances]))
    print(f"{len(utterances)} clips x {len(SPEEDS)} speeds, {lengths.sum()} frames, {time.time() - t0:.0f} s")
    return 0


def _lr_torch(X, y, Xte, C: float, n_classes: int = 8):
    """Class-balanced multinomial logistic regression with sklearn's objective (C x weighted cross-entropy +
    half the squared weights, bias free), fitted by L-BFGS on the device; returns test probabilities."""
    import torch

    n = len(y)
    counts = torch.bincount(y, minlength=n_classes).double()
    w = (n / (n_classes * counts.clamp(min=1)))[y]
    W = torch.zeros(X.shape[1], n_classes, dtype=torch.float64, device=X.device, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, device=X.device, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=300, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7, tolerance_change=1e-10)

    def closure():
        opt.zero_grad()
        ce = torch.nn.functional.cross_entropy(X @ W + b, y, reduction="none")
        loss = (C * (w * ce).sum() + 0.5 * (W ** 2).sum()) / n
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return torch.softmax(Xte @ W + b, 1).cpu().numpy()


def _head(F, y, actors, tr, te, seed: int, grid=(0.001, 0.003, 0.01, 0.03)):
    """Balanced accuracy on the test clips of an LR on features F (copies, N, D) (torch, float64): C chosen on
    the inner actor-disjoint split, trained on the training clips' copies, scored at speed 1."""
    import torch
    from sklearn.metrics import balanced_accuracy_score as bas

    from emovae.model import inner_split

    itr, iva = inner_split(actors[tr], 3, seed)
    itr, iva = tr[itr], tr[iva]
    F = F.double()
    Y = torch.from_numpy(y).to(F.device)

    def fit(rows, test_rows, C):
        X = F[:, rows].reshape(-1, F.shape[-1])
        m, s = X.mean(0), X.std(0) + 1e-9
        return _lr_torch((X - m) / s, Y[rows].repeat(F.shape[0]), (F[0, test_rows] - m) / s, C)

    scores = [bas(y[iva], fit(itr, iva, C).argmax(1)) for C in grid]
    C = grid[int(np.argmax(scores))]
    return float(bas(y[te], fit(tr, te, C).argmax(1))), C


def cmd_run(args) -> int:
    import torch
    from torch import nn

    from emovae.evaluate import actor_folds
    from emovae.features import speaker_normalize

    t_start = time.time()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    z = np.load(args.mel)
    q, lengths, tops = z["q"], z["lengths"], z["tops"]
    y, actors = z["labels"], z["actors"]
    n_clips, n_copies = len(y), len(z["speeds"])
    T = int(lengths.max())
    db = np.zeros((len(lengths), T, 40), np.float32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for c, (s0, n) in enumerate(zip(starts, lengths)):
        db[c, :n] = q[s0:s0 + n].astype(np.float32) / 255 * DB_RANGE + tops[c] - DB_RANGE
    DB = torch.from_numpy(db).to(dev)
    L = torch.from_numpy(lengths).to(dev)
    mask = (torch.arange(T, device=dev)[None] < L[:, None]).float()  # (copies x clips, T)
    w = np.load(args.teacher)
    teacher = nn.LSTM(40, 256, 2, batch_first=True).to(dev)
    teacher.load_state_dict({k: torch.from_numpy(w[k]) for k in w.files})
    with torch.no_grad():  # the teacher's second-layer output per frame, from the mel power
        H = torch.cat([teacher(10 ** (DB[i:i + 256] / 10))[0] for i in range(0, len(DB), 256)]).half()

    def by_copy(flat):  # (copies x clips, D) -> (copies, clips, D), float64
        return flat.double().reshape(n_copies, n_clips, -1)

    teacher_stats = by_copy(torch.cat([_chunk_stats(H, mask, i, i + 512) for i in range(0, len(H), 512)]))
    print(f"teacher frames ready in {time.time() - t_start:.0f} s on {dev}", flush=True)

    def norm(F):  # per speaker z-scoring of every copy (the adapted mode)
        a = F.cpu().numpy()
        return torch.from_numpy(np.stack([speaker_normalize(a[c], actors) for c in range(len(a))])).to(dev)

    rows, saved = [], {}
    for seed in args.seeds:
        for k, (tr, te) in enumerate(actor_folds(actors, 5, seed)[:args.max_folds]):
            if args.only and f"{seed}:{k}" not in args.only:
                continue
            copies_tr = np.concatenate([tr + j * n_clips for j in range(n_copies)])
            ct = torch.from_numpy(copies_tr).to(dev)
            mt = mask[ct].bool()
            x_mean = DB[ct][mt].mean(0)
            x_std = DB[ct][mt].std(0) + 1e-6
            h_mean = H[ct][mt].float().mean(0)
            h_std = H[ct][mt].float().std(0) + 1e-6
            X = (DB - x_mean) / x_std
            row = {"seed": seed, "fold": k}
            feats = {"teacher": teacher_stats}
            for hidden in args.hidden:
                torch.manual_seed(seed * 100 + k)
                lstm = nn.LSTM(40, hidden, 1, batch_first=True).to(dev)
                out = nn.Linear(hidden, 256).to(dev)
                params = list(lstm.parameters()) + list(out.parameters())
                opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
                steps = args.epochs * int(np.ceil(len(copies_tr) / args.batch))
                sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps, pct_start=0.1)
                t0 = time.time()
                for _ in range(args.epochs):
                    perm = ct[torch.randperm(len(ct), device=dev)]
                    for i in range(0, len(perm), args.batch):
                        idx = perm[i:i + args.batch]
                        n = int(L[idx].max())
                        pred = out(lstm(X[idx, :n])[0])
                        target = (H[idx, :n].float() - h_mean) / h_std
                        mm = mask[idx, :n, None]
                        loss = (((pred - target) ** 2) * mm).sum() / (mm.sum() * 256)
                        opt.zero_grad()
                        loss.backward()
                        nn.utils.clip_grad_norm_(params, 1.0)
                        opt.step()
                        sched.step()
                with torch.no_grad():
                    pred_stats, hid_stats, errs = [], [], []
                    for i in range(0, len(X), 512):
                        hh = lstm(X[i:i + 512])[0]
                        pp = out(hh)
                        pred_stats.append(_chunk_stats(pp, mask, i, i + 512, offset=i))
                        hid_stats.append(_chunk_stats(hh, mask, i, i + 512, offset=i))
                        target = (H[i:i + 512].float() - h_mean) / h_std
                        mm = mask[i:i + 512, :, None]
                        errs.append(((((pp - target) ** 2) * mm).sum((1, 2)) / (mm.sum((1, 2)) * 256)))
                    errs = torch.cat(errs).reshape(n_copies, n_clips)
                row[f"mse_train_{hidden}"] = float(errs[:, tr].mean())
                row[f"mse_test_{hidden}"] = float(errs[0, te].mean())
                row[f"train_s_{hidden}"] = round(time.time() - t0, 1)
                feats[f"student{hidden}"] = by_copy(torch.cat(pred_stats))
                feats[f"student{hidden} hidden"] = by_copy(torch.cat(hid_stats))
                if seed == args.seeds[0] and hidden == args.hidden[0]:
                    saved[f"fold{k}"] = feats[f"student{hidden}"].cpu().numpy().astype(np.float16)
            for name, F in feats.items() if not args.skip_heads else ():
                for mode, FF in (("strict", F), ("adapted", norm(F))):
                    row[f"{mode} {name}"], row[f"{mode} {name} C"] = _head(FF, y, actors, tr, te, seed)
            rows.append(row)
            print(json.dumps(row), flush=True)
            out_dir = Path(args.out)  # written after every fold, so a run cut short keeps what it measured
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "student-rows.json").write_text(json.dumps({
                "machine": platform.platform(), "device": str(dev),
                "gpu": torch.cuda.get_device_name() if dev.type == "cuda" else None, "args": vars(args),
                "rows": rows, "seconds": time.time() - t_start}))
    if saved:
        np.savez_compressed(Path(args.out) / "student-stats-seed0.npz", **saved)
    print(f"done in {time.time() - t_start:.0f} s", flush=True)
    return 0


def _chunk_stats(h, mask, i: int, j: int, offset: int | None = None):
    """Mean and std over valid frames of h (the rows i:j of the whole set, or h already those rows when
    ``offset`` is given): (rows, 2D) float32."""
    hh = (h[i:j] if offset is None else h).float()
    m = mask[i:j, : hh.shape[1], None]
    mean = (hh * m).sum(1) / m.sum(1)
    var = (((hh - mean[:, None]) ** 2) * m).sum(1) / m.sum(1)
    return torch_cat([mean, var.sqrt()])


def torch_cat(parts):
    import torch

    return torch.cat(parts, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("data")
    p.add_argument("--out", default=".devdata/encmel.npz")
    p.add_argument("--jobs", type=int, default=os.cpu_count())
    p = sub.add_parser("run")
    p.add_argument("--mel", default=".devdata/encmel.npz")
    p.add_argument("--teacher", default=".devdata/ge2e2.npz", help="the teacher's first two layers (state dict)")
    p.add_argument("--hidden", nargs="+", type=int, default=[128, 192])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--max-folds", type=int, default=5, help="folds per seed (fewer for a quick check)")
    p.add_argument("--only", nargs="*", default=[], help="run only these folds, as SEED:FOLD")
    p.add_argument("--skip-heads", action="store_true", help="train the students and save the first seed's "
                   "student statistics (student-stats-seed0.npz) without scoring heads")
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp/student"))
    args = ap.parse_args(argv)
    return {"data": cmd_data, "run": cmd_run}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
