"""The distributed engine (issue 23): a real Dask LocalCluster of 2 worker processes scores clips into exactly the
table one process writes, resumes a table, survives a worker killed mid-partition, extracts the same features;
and the errors a user can cause (bad scheduler address, unreachable scheduler, flags without --out)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from emovae import batch
from emovae.cli import main

from .conftest import write_ravdess_tree

pytest.importorskip("distributed")
pytest.importorskip("onnxruntime")
DEMO = Path(__file__).resolve().parents[1] / "src" / "emovae" / "demo"


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[str]:
    """40 clips (the 8 demo clips and 32 synthetic ones) and one file that is not audio: 41 rows."""
    root = tmp_path_factory.mktemp("clips")
    paths = [str(p) for p in sorted(DEMO.glob("*.flac"))]
    paths += [str(p) for p in write_ravdess_tree(root / "synthetic", actors=(1, 2, 3, 4), seconds=0.7)]
    bad = root / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    return paths[:20] + [str(bad)] + paths[20:]


@pytest.fixture(scope="module")
def rec():
    from emovae.runtime import load_pretrained

    return load_pretrained()


@pytest.fixture(scope="module")
def single(clips, rec, tmp_path_factory) -> Path:
    """The table one process writes."""
    out = tmp_path_factory.mktemp("single") / "single.csv"
    counts = batch.run_to_table(rec, clips, [], out)
    assert counts == {"scored": 40, "failed": 1, "skipped": 0}
    return out


@pytest.fixture(scope="module")
def engine():
    from emovae.cluster import Engine

    with Engine(workers=2) as eng:
        yield eng


def _rows(path):
    return batch.read_table(path)[1]


def test_a_local_cluster_of_two_workers_writes_the_single_process_table(clips, rec, single, engine, tmp_path):
    from emovae.cluster import ModelSpec

    assert len(engine.client.nthreads()) == 2
    out = tmp_path / "dask.csv"
    # partitions of one network batch: 3 partitions, so both workers score
    counts = batch.run_to_table(rec, clips, [], out, scorer=engine.scorer(ModelSpec(), rec.classes, batch.CHUNK))
    assert counts == {"scored": 40, "failed": 1, "skipped": 0}
    assert out.read_bytes() == single.read_bytes()
    assert "broken.wav" in _rows(out)[20]["error"]


def test_the_workers_load_the_model_once_each(clips, rec, engine):
    from emovae import cluster

    list(engine.scorer(cluster.ModelSpec(), rec.classes, 8)(clips[:24]))

    assert list(engine.client.run(cluster.loaded_models).values()) == [[cluster.ModelSpec()]] * 2


def test_the_cli_resumes_a_table_on_the_cluster_scoring_only_the_rest(clips, rec, single, tmp_path, capsys):
    out = tmp_path / "resumed.csv"
    assert batch.run_to_table(rec, clips[:17], [], out)["scored"] == 17  # a run stopped after 17 files
    manifest = tmp_path / "all.csv"
    manifest.write_text("path\n" + "\n".join(clips) + "\n")
    assert main(["predict", str(manifest), "--out", str(out), "--workers", "2"]) == 1  # one file fails
    err = capsys.readouterr().err
    assert "23 files scored, 1 failed, 17 already in the table" in err and "Dask LocalCluster" in err
    assert out.read_bytes() == single.read_bytes()


def _killing_partition(paths, spec, classes, marker, poison):
    """Score like ``cluster.score_partition``, but the first worker that meets ``poison`` dies (SIGKILL) on it."""
    from emovae import cluster

    if poison in paths and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return cluster.score_partition(paths, spec, classes)


def test_a_partition_whose_worker_is_killed_is_scored_again_and_only_once(clips, rec, single, engine, tmp_path):
    import cloudpickle

    from emovae.cluster import ModelSpec, partitions

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests package
    try:
        marker, out = tmp_path / "killed", tmp_path / "after-kill.csv"
        pids_before = set(engine.client.run(os.getpid).values())

        def scorer(todo):
            for rows in engine.map(_killing_partition, partitions(todo, batch.CHUNK), ModelSpec(), rec.classes,
                                   str(marker), clips[25]):
                yield from rows

        counts = batch.run_to_table(rec, clips, [], out, scorer=scorer)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert marker.exists(), "no worker was killed: the test did not test anything"
    assert counts == {"scored": 40, "failed": 1, "skipped": 0}
    files = [r["file"] for r in _rows(out)]
    assert len(files) == len(set(files)) == 41
    assert out.read_bytes() == single.read_bytes()
    assert set(engine.client.run(os.getpid).values()) != pids_before  # the nanny started a new worker


def test_features_on_the_cluster_equal_the_single_process_table(tmp_path):
    from emovae.extraction import FeatureTable

    data = tmp_path / "ravdess"
    write_ravdess_tree(data, actors=(1, 2), emotions=(1, 3, 5, 8), seconds=0.6, per_emotion=2)
    common = ["features", "--data", str(data), "--voice", "0", "--n-mfcc", "13"]
    assert main(["-q", *common, "--out", str(tmp_path / "one.npz"), "--jobs", "1",
                 "--cache-dir", str(tmp_path / "cache1")]) == 0
    assert main(["-q", *common, "--out", str(tmp_path / "two.npz"), "--workers", "2",
                 "--cache-dir", str(tmp_path / "cache2")]) == 0
    one, two = FeatureTable.load(tmp_path / "one.npz"), FeatureTable.load(tmp_path / "two.npz")
    assert one.paths == two.paths and one.stat_names == two.stat_names
    np.testing.assert_array_equal(one.stats, two.stats)
    for a, b in zip(one.frames, two.frames):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "one.csv").read_text() == (tmp_path / "two.csv").read_text()
    assert len(list((tmp_path / "cache2").rglob("*.npz"))) == 16  # the client filled the cache


@pytest.mark.parametrize("argv, message", [
    (["--scheduler", "nonsense"], "not an address; write it as tcp://HOST:PORT"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], "give one or the other"),
])
def test_cluster_mistakes_get_one_clear_message(argv, message, tmp_path, capsys):
    assert main(["predict", str(DEMO), "--out", str(tmp_path / "t.csv"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "t.csv").exists()


def test_cluster_flags_need_a_table(capsys):
    assert main(["predict", str(DEMO), "--workers", "2"]) == 2
    assert "add --out results.csv" in capsys.readouterr().err


def test_an_unreachable_scheduler_is_named_with_the_fix():
    import socket

    from emovae.cluster import Engine
    from emovae.errors import EmovaeError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    with pytest.raises(EmovaeError, match=rf"tcp://127.0.0.1:{port}.*cannot reach it.*dask scheduler"):
        Engine(f"tcp://127.0.0.1:{port}", connect_timeout_s=1)


def test_the_default_path_never_imports_dask(tmp_path):
    import subprocess

    code = ("import sys; from emovae.cli import main; "
            f"main(['-q', 'predict', {str(DEMO)!r}, '--out', {str(tmp_path / 'x.csv')!r}]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip().splitlines()[-1] == "[]"
