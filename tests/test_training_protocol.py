"""Trainer with any task following rnnext.tasks.TaskProtocol, named log columns, and
time-budgeted runs that validate often and plot in the metric's unit (issue 15, points 6, 9)."""

import re

import numpy as np
import pytest

import rnnext
from rnnext import cli, optim, tasks, training
from rnnext.losses import mse
from rnnext.training import Trainer, budget_cosine_schedule


class FakeClock:
    """The training loop's clock, advanced by hand: timings in these tests are exact."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class DuckTask:
    """Not a subclass of rnnext.tasks.Task: just the two methods of the protocol. With a
    fake clock, each training step takes ``step_s`` seconds of it."""

    def __init__(self, clock=None, step_s=0.0):
        self.rng = np.random.default_rng(0)
        self.clock, self.step_s = clock, step_s

    def train_step(self, model):
        x = self.rng.standard_normal((5, 4, 2)).astype(np.float32)
        y, _ = model(x)
        loss, grad = mse(y, x[..., :1], reduction="mean")
        model.backward(grad)
        if self.clock is not None:
            self.clock.t += self.step_s
        return loss

    def evaluate(self, model, final=False):
        x = np.random.default_rng(1).standard_normal((5, 16, 2)).astype(np.float32)
        loss, _ = mse(model(x)[0], x[..., :1], reduction="mean")
        return {"loss": loss, "metric": loss}


def make(task, **kw):
    model = rnnext.RNN(2, 8, 1, seed=0)
    return Trainer(task, model, optim.Adam(model, lr=1e-2), **kw)


def test_any_object_following_the_protocol_trains():
    task = DuckTask()
    assert isinstance(task, tasks.TaskProtocol) and not isinstance(task, tasks.Task)
    trainer = make(task, eval_every=10)
    before = task.evaluate(trainer.model)["loss"]
    final = trainer.fit(steps=60, progress=False, log=lambda line: None)
    assert final["loss"] < before and trainer.history["val_step"] == [10, 20, 30, 40, 50, 60]
    with pytest.raises(TypeError, match="train_step.*TaskProtocol.*object, which has no train_step or evaluate"):
        make(object())


def test_every_log_column_is_named():
    class Unnamed(tasks.Task):  # a subclass that sets no metric name
        def __init__(self):
            self.duck = DuckTask()

        def train_step(self, model):
            return self.duck.train_step(model)

        def evaluate(self, model, final=False):
            return self.duck.evaluate(model, final)

    lines = []
    make(Unnamed(), eval_every=5).fit(steps=5, progress=False, log=lines.append)
    (line,) = lines
    num = r"-?\d+\.\d+"
    assert re.fullmatch(rf"step +5  time +{num} s  train loss {num}  val loss {num}  metric {num}  steps/s {num}",
                        line), line


def test_a_time_budget_validates_at_least_ten_times_spaced_by_time(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(training, "clock", clock)
    trainer = make(DuckTask(clock, step_s=0.013), eval_every=None)
    lines = []
    trainer.fit(minutes=2.0 / 60, progress=False, log=lines.append)  # 2 s: 154 steps of 0.013 s
    assert trainer.step == 154 and trainer.seconds == pytest.approx(154 * 0.013)
    points = len(trainer.history["val_step"]) + 1  # the final evaluation on all held-out data counts
    assert points == 10 and len(lines) == 9 and trainer.final["step"] == 154
    # every 0.2 s: at the first step whose end passes k * 0.2 s
    assert trainer.history["val_step"] == [int(np.ceil(k * 0.2 / 0.013 - 1e-9)) for k in range(1, 10)]
    assert [line.split()[3] for line in lines] == [f"{0.013 * s:.1f}" for s in trainer.history["val_step"]]


def test_the_time_cosine_schedule_ends_with_the_budget(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(training, "clock", clock)
    trainer = make(DuckTask(clock, step_s=1 / 128), eval_every=None)
    factors = []
    schedule = budget_cosine_schedule(trainer, final_factor=0.01)
    trainer.optimizer.lr_schedule = lambda step: factors.append(schedule(step)) or factors[-1]
    trainer.fit(minutes=1.0 / 60, progress=False)  # 128 steps of 1/128 s
    assert len(factors) == 128
    # the update of step n comes at the end of its time, n / 128 s: the factor is cosine(n / 128)
    want = [0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * n / 128)) for n in range(1, 129)]
    np.testing.assert_allclose(factors, want, rtol=1e-9, atol=1e-12)


def test_the_plot_shows_the_validation_metric_and_the_final_point_in_the_metric_unit(tmp_path):
    pytest.importorskip("matplotlib")
    trainer = make(DuckTask(), eval_every=4)
    trainer.fit(steps=12, progress=False, log=lambda line: None)
    series = cli.plot_series(trainer.history, trainer.final)
    assert list(series["metric_step"]) == [4, 8, 12, 12]
    assert series["metric"][-1] == trainer.final["metric"]
    # charlm: the printed metric is bits/char, and so is the plot's metric panel
    path = tmp_path / "run.png"
    cli.plot_history(trainer.history, str(path), final=trainer.final, metric="bits/char")
    assert path.stat().st_size > 1000


def test_charlm_plot_axis_is_bits_per_char(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    seen = {}

    def spy(history, path, title="", ylabel="loss", final=None, metric=""):
        seen.update(final=final, metric=metric, val=len(history["val_step"]))

    monkeypatch.setattr(cli, "plot_history", spy)
    text = tmp_path / "t.txt"
    text.write_text("abc abd abe\n" * 400)
    assert cli.main(["train", "--data", str(text), "--minutes", "0.05", "--batch", "4", "--hidden", "8",
                     "--plot", str(tmp_path / "p.png"), "--quiet"]) == 0
    assert seen["metric"] == "bits/char" and seen["final"] is not None and seen["val"] >= 9
