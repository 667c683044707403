import subprocess
import sys

from emovae.cli import main

from .conftest import write_ravdess_tree


def test_help_is_fast_and_light():
    code = "import sys, emovae.cli; emovae.cli.build_parser(); print(sorted(m for m in ('torch','matplotlib','sklearn','librosa') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_features_command(tmp_path, capsys):
    write_ravdess_tree(tmp_path / "data", actors=(1, 2), emotions=(1, 2))
    rc = main(["-q", "features", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "f.npz"),
               "--cache-dir", str(tmp_path / "cache"), "--n-mfcc", "13", "--jobs", "1"])
    assert rc == 0
    assert (tmp_path / "f.npz").exists() and (tmp_path / "f.csv").exists()
    assert "4 clips from 2 actors" in capsys.readouterr().out


def test_features_missing_folder_is_clear_error(tmp_path, capsys):
    rc = main(["features", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "f.npz")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and "Traceback" not in err
