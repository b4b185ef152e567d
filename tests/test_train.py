"""The training loop and checkpoints: round trip, exact resume, corrupt files."""

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import rnnext
from rnnext import optim, tasks
from rnnext.checkpoint import load_checkpoint, save_checkpoint
from rnnext.training import Trainer


@pytest.fixture
def text_path(write_corpus):
    words = ["for ", "i ", "in ", "range(n):\n", "    x ", "+= ", "1\n", "def ", "f(x):\n", "return "]
    return write_corpus(words, 2500, "code.txt")[0]


def make_run(task, hidden=16, opt="adam", lr=3e-3, schedule_steps=None, eval_every=5, seed=0, layers=1):
    model = task.build_model(hidden, layers, seed=seed)
    sched = optim.cosine_schedule(schedule_steps) if schedule_steps else None
    kwargs = dict(momentum=0.9) if opt == "sgd" else {}
    optimizer = optim.OPTIMIZERS[opt](model, lr=lr, lr_schedule=sched, **kwargs)
    return Trainer(task, model, optimizer, clip=1.0, eval_every=eval_every)


def test_fit_records_history_and_validates():
    task = tasks.Sentiment(batch_size=16, heldout_size=50)
    trainer = make_run(task, eval_every=4)
    seen = []
    final = trainer.fit(steps=10, progress=False, callbacks=(lambda tr, r: seen.append((tr.step, r)),))
    assert trainer.step == 10 and len(trainer.history["train_loss"]) == 10
    assert trainer.history["val_step"] == [4, 8] and [s for s, _ in seen] == [4, 8]
    assert set(final) == {"loss", "metric"}
    trainer.fit(steps=12, progress=False)  # steps counts from the start of the run
    assert trainer.step == 12


def test_fit_stops_on_the_time_budget():
    """In a child process with a timeout: a budget ignored would fail here, not hang."""
    code = textwrap.dedent("""
        from rnnext import optim, tasks
        from rnnext.training import Trainer
        task = tasks.Sentiment(batch_size=8, heldout_size=20)
        model = task.build_model(16, 1, seed=0)
        trainer = Trainer(task, model, optim.Adam(model, lr=3e-3), clip=1.0, eval_every=10**6)
        trainer.fit(steps=10**9, minutes=0.002, progress=False)  # 0.12 s
        print(trainer.step)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 0 < int(done.stdout.split()[-1]) < 10**9  # after the time-spaced validation lines


def test_fit_progress_bar_and_plain_lines(capsys):
    pytest.importorskip("tqdm")
    task = tasks.Sentiment(batch_size=8, heldout_size=20)
    make_run(task, eval_every=3).fit(steps=6, progress=True)
    out, err = capsys.readouterr()
    assert out.count("step ") == 2 and "accuracy" in out
    assert "6/6" in err  # tqdm's bar on stderr


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's overflow warnings on the way
def test_fit_refuses_a_diverging_run():
    task = tasks.Adding(seq_len=10, batch_size=8, heldout_size=5)
    trainer = make_run(task, lr=1e6, opt="sgd")
    trainer.clip = None
    with pytest.raises(FloatingPointError, match="training loss"):
        trainer.fit(steps=200, progress=False)


def test_trainer_checks_its_arguments():
    task = tasks.Sentiment(heldout_size=5)
    model = task.build_model(4)
    other = task.build_model(4)
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(task, model, optim.Adam(other))
    with pytest.raises(TypeError, match="task"):
        Trainer("adding", model, optim.Adam(model))
    with pytest.raises(ValueError, match="clip"):
        Trainer(task, model, optim.Adam(model), clip=-1)
    with pytest.raises(ValueError, match="steps, minutes"):
        Trainer(task, model, optim.Adam(model)).fit()


# ------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(tmp_path, text_path):
    task = tasks.CharLM(text_path, batch_size=4, bptt=8)
    trainer = make_run(task)
    trainer.fit(steps=7, progress=False)
    path = tmp_path / "run.ckpt"
    save_checkpoint(path, trainer.model, trainer.optimizer, task, trainer, extra={"note": "hi"})
    ck = load_checkpoint(path)
    assert ck.model is not trainer.model and ck.model.config == trainer.model.config
    np.testing.assert_array_equal(ck.model.flat_params, trainer.model.flat_params)
    want, got = trainer.optimizer.state_dict(), ck.optimizer.state_dict()
    assert type(ck.optimizer) is optim.Adam and got["step_count"] == 7
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    assert ck.trainer == trainer.state_dict() and ck.extra == {"note": "hi"}
    restored = ck.build_task()
    state = restored.state_dict()
    assert state["chunk"] == task.chunk and state["rng"] == task.state_dict()["rng"]
    np.testing.assert_array_equal(state["h"], task.h)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_checkpoint_of_a_bare_model(tmp_path):
    rnn = rnnext.RNN(3, 5, 2, num_layers=2, nonlinearity="relu", dtype="float64", seed=1)
    save_checkpoint(str(tmp_path / "m.ckpt"), rnn)
    ck = load_checkpoint(str(tmp_path / "m.ckpt"))
    assert ck.optimizer is None and ck.task is None and ck.model.config == rnn.config
    np.testing.assert_array_equal(ck.model.flat_params, rnn.flat_params)
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    np.testing.assert_array_equal(ck.model(x)[0], rnn(x)[0])


def _run_with_stop(make_task, total, stop, tmp_path, **run_kw):
    """Losses and parameters of a run stopped at ``stop``, saved, loaded and resumed."""
    first = make_run(make_task(), **run_kw)
    first.fit(steps=stop, progress=False)
    path = tmp_path / "stop.ckpt"
    save_checkpoint(path, first.model, first.optimizer, first.task, first)
    first.fit(steps=stop + 3, progress=False)  # the saved run going on must not matter
    ck = load_checkpoint(path)
    task = ck.build_task()
    if run_kw.get("schedule_steps"):
        ck.optimizer.lr_schedule = optim.cosine_schedule(run_kw["schedule_steps"])
    resumed = Trainer(task, ck.model, ck.optimizer, clip=1.0, eval_every=run_kw.get("eval_every", 5))
    resumed.load_state_dict(ck.trainer)
    resumed.fit(steps=total, progress=False)
    return resumed


@pytest.mark.parametrize(
    "name,make_task,run_kw",
    [
        # carried hidden state, data position, several passes over the text, Adam
        ("charlm", lambda p: tasks.CharLM(p, batch_size=8, bptt=48, seed=3), dict(lr=1e-2)),
        # random generator, cosine schedule, SGD with momentum
        ("reverse", lambda p: tasks.Reverse(4, 3, batch_size=16, heldout_size=50, seed=1),
         dict(opt="sgd", lr=0.1, schedule_steps=40)),
        ("classify", lambda p: tasks.Sentiment(batch_size=16, heldout_size=50, seed=2), dict(opt="rmsprop")),
        ("charlm", lambda p: tasks.CharLM(p, batch_size=8, bptt=48, seed=4), dict(opt="adagrad", lr=0.05, layers=2)),
    ],
)
def test_stop_and_resume_equals_uninterrupted(name, make_task, run_kw, text_path, tmp_path):
    total, stop = 40, 17
    whole = make_run(make_task(text_path), **run_kw)
    whole.fit(steps=total, progress=False)
    if name == "charlm":
        assert whole.task.pass_index >= 1  # the run crossed a pass boundary
    resumed = _run_with_stop(lambda: make_task(text_path), total, stop, tmp_path, **run_kw)
    assert resumed.history["train_loss"] == whole.history["train_loss"]  # exactly, step by step
    assert resumed.history["val_loss"] == whole.history["val_loss"]
    np.testing.assert_array_equal(resumed.model.flat_params, whole.model.flat_params)


def test_resume_refuses_changed_data(tmp_path, text_path):
    task = tasks.CharLM(text_path, batch_size=4, bptt=8)
    trainer = make_run(task)
    save_checkpoint(tmp_path / "c.ckpt", trainer.model, trainer.optimizer, task, trainer)
    with open(text_path, "a", encoding="utf-8") as fh:
        fh.write("more text")
    with pytest.raises(ValueError, match="data differs"):
        load_checkpoint(tmp_path / "c.ckpt").build_task()


# ------------------------------------------------------------------- broken checkpoints
@pytest.fixture
def good_checkpoint(tmp_path):
    task = tasks.Reverse(4, 3, batch_size=8, heldout_size=20)
    trainer = make_run(task)
    trainer.fit(steps=3, progress=False)
    path = tmp_path / "good.ckpt"
    save_checkpoint(path, trainer.model, trainer.optimizer, task, trainer)
    return path


def _damage_truncate(data):
    return data[: len(data) // 2]


def _damage_flip(data):
    b = bytearray(data)
    for i in range(len(b) // 3, len(b) // 3 + 64):  # inside the stored arrays
        b[i] ^= 0xFF
    return bytes(b)


@pytest.mark.parametrize(
    "damage",
    [_damage_truncate, _damage_flip, lambda d: b"", lambda d: b"not a checkpoint at all\n" * 10, lambda d: d[:-30]],
    ids=["half", "flipped-bytes", "empty", "text", "tail-cut"],
)
def test_corrupt_checkpoint_is_refused_clearly(good_checkpoint, tmp_path, damage):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(damage(good_checkpoint.read_bytes()))
    with pytest.raises(ValueError, match=r"checkpoint .*bad\.ckpt.*nothing was loaded"):
        load_checkpoint(bad)


def _rewrite(src, dst, change):
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(dst, "wb") as fh:
        np.savez(fh, **arrays)


def _set_meta(key, value):
    def change(arrays):
        meta = json.loads(str(arrays["meta"]))
        meta[key] = value
        arrays["meta"] = np.array(json.dumps(meta))

    return change


@pytest.mark.parametrize(
    "change,match",
    [
        (_set_meta("version", 99), "version 99"),
        (_set_meta("format", "something-else"), "not an rnnext checkpoint"),
        (lambda a: a.pop("meta"), "no 'meta'"),
        (lambda a: a.update(meta=np.array("{not json")), "not valid JSON"),
        (lambda a: a.update(params=a["params"][:-1]), "params has shape"),
        (lambda a: a.pop("optimizer/exp_avg"), "optimizer state is invalid"),
        (_set_meta("model", {"input_size": -1}), "model config is invalid"),
    ],
)
def test_inconsistent_checkpoint_is_refused_clearly(good_checkpoint, tmp_path, change, match):
    bad = tmp_path / "odd.ckpt"
    _rewrite(good_checkpoint, bad, change)
    with pytest.raises(ValueError, match=match):
        load_checkpoint(bad)


def test_npy_file_and_missing_file(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not an .npz archive"):
        load_checkpoint(tmp_path / "a.npy")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_checkpoint(tmp_path / "nothing.ckpt")


def test_interrupted_save_keeps_the_previous_checkpoint(good_checkpoint, monkeypatch):
    before = good_checkpoint.read_bytes()
    task = tasks.Reverse(4, 3, batch_size=8, heldout_size=20)
    trainer = make_run(task)

    def savez_then_die(fh, **arrays):
        with zipfile.ZipFile(fh, "w") as z:  # half an archive, then the process "dies"
            z.writestr("params.npy", b"\x93NUMPY partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", savez_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(good_checkpoint, trainer.model, trainer.optimizer, task, trainer)
    assert good_checkpoint.read_bytes() == before
    assert os.listdir(good_checkpoint.parent) == [good_checkpoint.name]  # no temporary left
    monkeypatch.undo()
    assert load_checkpoint(good_checkpoint).trainer["step"] == 3


def test_saved_file_is_readable_by_others(tmp_path):
    rnn = rnnext.RNN(2, 2, seed=0)
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "p.ckpt", rnn)
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "p.ckpt").st_mode & 0o777 == 0o644
