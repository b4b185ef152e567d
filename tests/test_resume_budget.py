"""`rnnext train --resume CKPT` alone finishes the run it continues (issue 12, item 4): the
step and time budget are saved in the checkpoint; --steps / --minutes change it."""

import numpy as np

from rnnext import checkpoint, cli, tasks, training


def _interrupt_at(monkeypatch, step):
    """Make classify's training raise KeyboardInterrupt (Ctrl-C) before its step ``step + 1``."""
    real = tasks.Sentiment.train_step
    count = {"n": 0}

    def train_step(self, model):
        if count["n"] == step:
            raise KeyboardInterrupt
        count["n"] += 1
        return real(self, model)

    monkeypatch.setattr(tasks.Sentiment, "train_step", train_step)


def test_resume_alone_continues_to_the_steps_the_run_was_started_with(tmp_path, monkeypatch, capsys):
    whole, part = str(tmp_path / "whole.ckpt"), str(tmp_path / "part.ckpt")
    args = ["train", "--task", "classify", "--steps", "60", "--eval-every", "20", "--quiet"]
    assert cli.main(args + ["--save", whole]) == 0
    with monkeypatch.context() as m:
        _interrupt_at(m, 25)
        assert cli.main(args + ["--save", part]) == 0
    assert checkpoint.load_checkpoint(part).trainer["step"] == 25
    capsys.readouterr()
    cont = str(tmp_path / "cont.ckpt")
    assert cli.main(["train", "--resume", part, "--save", cont, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "resuming at step 25" in out and "until step 60" in out
    a, b = checkpoint.load_checkpoint(whole), checkpoint.load_checkpoint(cont)
    assert b.trainer["step"] == 60  # not the task default of 2000
    assert b.trainer["history"]["train_loss"] == a.trainer["history"]["train_loss"]  # the same run, exactly
    np.testing.assert_array_equal(a.model.flat_params, b.model.flat_params)


def test_steps_given_with_resume_change_the_budget(tmp_path, capsys):
    ckpt = str(tmp_path / "r.ckpt")
    assert cli.main(["train", "--task", "classify", "--steps", "10", "--save", ckpt, "--quiet"]) == 0
    assert cli.main(["train", "--resume", ckpt, "--steps", "30", "--save", ckpt, "--quiet"]) == 0
    ck = checkpoint.load_checkpoint(ckpt)
    assert ck.trainer["step"] == 30 and ck.extra["settings"]["steps"] == 30
    assert cli.main(["train", "--resume", ckpt, "--save", ckpt, "--quiet"]) == 0  # finished: nothing more
    assert checkpoint.load_checkpoint(ckpt).trainer["step"] == 30


def test_resume_alone_continues_to_the_minutes_the_run_was_started_with(tmp_path, monkeypatch, capsys):
    text = tmp_path / "t.txt"
    text.write_text("abc abd abe abf\n" * 500)
    ckpt = str(tmp_path / "lm.ckpt")
    args = ["train", "--data", str(text), "--minutes", "0.04", "--batch", "4", "--hidden", "8", "--quiet"]
    now = {"t": 0.0, "interrupt": 5}
    monkeypatch.setattr(training, "clock", lambda: now["t"])  # each step takes 1/16 s of this clock
    real = tasks.CharLM.train_step

    def train_step(self, model):
        if now["interrupt"] == 0:
            raise KeyboardInterrupt
        now["interrupt"] -= 1
        now["t"] += 1 / 16
        return real(self, model)

    monkeypatch.setattr(tasks.CharLM, "train_step", train_step)
    assert cli.main(args + ["--save", ckpt]) == 0
    first = checkpoint.load_checkpoint(ckpt)
    assert first.trainer["step"] == 5 and first.extra["settings"]["minutes"] == 0.04
    assert first.trainer["seconds"] == 5 / 16
    now["interrupt"] = -1
    assert cli.main(["train", "--resume", ckpt, "--save", ckpt, "--quiet"]) == 0
    done = checkpoint.load_checkpoint(ckpt)
    # 0.04 minutes = 2.4 s in all (not 2.4 s more): the first step ending at or after 2.4 s
    assert done.trainer["step"] == 39 and done.trainer["seconds"] == 39 / 16
