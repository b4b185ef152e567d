"""The ``rnnext`` command, run as a subprocess the way a user runs it."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnext.checkpoint import load_checkpoint

SCRIPT = Path(sys.executable).with_name("rnnext")
RNNEXT = [str(SCRIPT)] if SCRIPT.exists() else [shutil.which("rnnext") or "rnnext"]


def run(args, cwd, python_prelude=None):
    """Run ``rnnext args`` (or, with a prelude, ``main(args)`` after that Python code)."""
    if python_prelude is None:
        cmd = RNNEXT + args
    else:
        code = f"{python_prelude}\nimport sys\nfrom rnnext.cli import main\nsys.exit(main({args!r}))"
        cmd = [sys.executable, "-c", code]
    env = dict(os.environ, PYTHONHASHSEED="0")
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def last_line(proc):
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture
def corpus(write_corpus):
    words = ["while ", "x ", "< ", "10:\n", "    x ", "+= ", "1\n", "print(x)\n", "if ", "y:\n"]
    return write_corpus(words, 3000)[0]


def test_train_default_task_then_sample(tmp_path):
    ckpt = tmp_path / "lm.ckpt"
    proc = run(["train", "--steps", "20", "--save", str(ckpt), "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # --quiet: no progress bar
    assert "standard library" in proc.stdout
    m = re.fullmatch(r"held-out bits/char: (\d+\.\d+) \((\d+) characters; unigram baseline (\d+\.\d+)\)",
                     last_line(proc))
    assert m, last_line(proc)
    bits, baseline = float(m.group(1)), float(m.group(3))
    assert 3.0 < baseline < 6.0 and bits < baseline  # 20 steps already beat character frequencies
    assert load_checkpoint(ckpt).trainer["step"] == 20

    args = ["sample", "--checkpoint", str(ckpt), "--prime", "def ", "--length", "60", "--seed", "7"]
    first, second = run(args, tmp_path), run(args, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout  # seeded
    assert first.stdout.startswith("def ") and len(first.stdout) == len("def ") + 60 + 1


def test_python_m_with_plot_and_progress_bar(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    png = tmp_path / "curves.png"
    cmd = [sys.executable, "-m", "rnnext", "train", "--task", "classify", "--steps", "30", "--eval-every", "10",
           "--plot", str(png)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(re.findall(r"^step +\d+ ", proc.stdout, re.M)) == 3
    assert re.fullmatch(r"held-out accuracy: \d+\.\d\d% \(1000 sequences, chance 50%\)", last_line(proc))
    assert "30/30" in proc.stderr  # tqdm
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_on_the_command_line_equals_one_run(tmp_path):
    common = ["--task", "reverse", "--schedule-steps", "60", "--eval-every", "20", "--quiet"]
    one = run(["train", "--steps", "60", "--save", "one.ckpt"] + common, tmp_path)
    part = run(["train", "--steps", "30", "--save", "two.ckpt"] + common, tmp_path)
    rest = run(["train", "--resume", "two.ckpt", "--steps", "60", "--save", "two.ckpt", "--quiet"], tmp_path)
    for p in (one, part, rest):
        assert p.returncode == 0, p.stderr
    assert "resuming at step 30" in rest.stdout
    assert last_line(rest) == last_line(one)
    a, b = load_checkpoint(tmp_path / "one.ckpt"), load_checkpoint(tmp_path / "two.ckpt")
    untimed = [{k: v for k, v in ck.trainer.items() if k != "seconds"} for ck in (a, b)]
    assert untimed[0] == untimed[1]  # every step's loss, every validation (training time differs)
    np.testing.assert_array_equal(a.model.flat_params, b.model.flat_params)


def test_without_tqdm_and_matplotlib(tmp_path, corpus):
    no_tqdm = "import sys; sys.modules['tqdm'] = None; sys.modules['tqdm.auto'] = None"
    proc = run(["train", "--data", corpus, "--steps", "6", "--eval-every", "3", "--hidden", "16"], tmp_path, no_tqdm)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and proc.stdout.count("bits/char") == 3  # two validations, the result
    no_mpl = "import sys; sys.modules['matplotlib'] = None"
    proc = run(["train", "--task", "adding", "--steps", "3", "--plot", "x.png"], tmp_path, no_mpl)
    assert proc.returncode == 1
    assert "--plot: needs matplotlib" in proc.stderr and "step" not in proc.stdout  # before training
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["train", "--task", "adding", "--data", "f.txt"], 1, "--data: only the charlm task"),
        (["train", "--steps", "-1"], 2, "expected an integer >= 0"),
        (["train", "--task", "translate"], 2, "invalid choice"),
        (["train", "--data", "missing.txt", "--steps", "1"], 1, "cannot read"),
        (["sample", "--checkpoint", "missing.ckpt"], 1, "no such file"),
        (["sample"], 2, "--checkpoint"),
        ([], 2, "train"),
    ],
)
def test_bad_command_lines(tmp_path, args, code, message):
    proc = run(args, tmp_path)
    assert proc.returncode == code
    assert message in proc.stderr + proc.stdout


def test_resume_errors(tmp_path):
    proc = run(["train", "--task", "classify", "--steps", "2", "--save", "c.ckpt", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    clash = run(["train", "--resume", "c.ckpt", "--hidden", "8"], tmp_path)
    assert clash.returncode == 1 and "--hidden" in clash.stderr and "settings saved" in clash.stderr
    sample = run(["sample", "--checkpoint", "c.ckpt"], tmp_path)
    assert sample.returncode == 1 and "not a character model" in sample.stderr
    data = (tmp_path / "c.ckpt").read_bytes()
    (tmp_path / "c.ckpt").write_bytes(data[: len(data) // 2])
    broken = run(["train", "--resume", "c.ckpt"], tmp_path)
    assert broken.returncode == 1 and "truncated or corrupt" in broken.stderr
