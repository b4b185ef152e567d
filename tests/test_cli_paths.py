"""`rnnext train` output paths (issue 15, point 1): checked before training; a failure to
write at the end still prints the metric line, names the option and keeps the run."""

import os

import pytest

from rnnext import checkpoint, cli


def test_a_missing_save_directory_fails_before_training(tmp_path, capsys):
    bad = str(tmp_path / "nonexist" / "x.ckpt")
    assert cli.main(["train", "--task", "classify", "--save", bad, "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert "step" not in out  # nothing was trained
    assert "--save" in err and "does not exist" in err and bad in err
    assert ".tmp" not in err


def test_a_missing_plot_directory_fails_before_training(tmp_path, capsys):
    bad = str(tmp_path / "nonexist" / "x.png")
    assert cli.main(["train", "--task", "classify", "--plot", bad, "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "--plot" in err and "does not exist" in err


def test_a_directory_as_the_save_path_fails_before_training(tmp_path, capsys):
    assert cli.main(["train", "--task", "classify", "--save", str(tmp_path), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "--save" in err and "is a directory" in err


def test_a_read_only_directory_fails_before_training(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # root may write anywhere: answer os.access as it would for any other user
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if (
            os.path.abspath(p) == str(folder) and mode & os.W_OK) else real_access(p, mode))
    try:
        assert cli.main(["train", "--task", "classify", "--save", str(folder / "x.ckpt"), "--quiet"]) == 1
    finally:
        folder.chmod(0o700)
    assert "not writable" in capsys.readouterr().err


def test_a_failed_final_save_prints_the_metric_and_keeps_the_run(tmp_path, capsys, monkeypatch):
    target = str(tmp_path / "x.ckpt")
    real = checkpoint.save_checkpoint

    def failing(path, *args, **kwargs):
        if os.fspath(path) == target:
            raise OSError(28, "No space left on device")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(cli, "save_checkpoint", failing)
    monkeypatch.setattr(cli, "SAFE_DIR", str(tmp_path / "safe"))
    os.mkdir(tmp_path / "safe")
    assert cli.main(["train", "--task", "classify", "--steps", "20", "--eval-every", "10", "--save", target,
                     "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1].startswith("held-out accuracy:")  # the metric line, last
    assert "--save" in err and target in err and "No space left" in err
    rescued = os.listdir(tmp_path / "safe")
    assert len(rescued) == 1 and rescued[0] in err
    ck = checkpoint.load_checkpoint(tmp_path / "safe" / rescued[0])
    assert ck.trainer["step"] == 20


def test_a_failed_plot_still_prints_the_metric_and_saves(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")

    def failing(*args, **kwargs):
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(cli, "plot_history", failing)
    ckpt = tmp_path / "x.ckpt"
    assert cli.main(["train", "--task", "classify", "--steps", "5", "--save", str(ckpt),
                     "--plot", str(tmp_path / "x.png"), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1].startswith("held-out accuracy:")
    assert "--plot" in err and "Permission denied" in err
    assert checkpoint.load_checkpoint(ckpt).trainer["step"] == 5
