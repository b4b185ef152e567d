"""Data-parallel training over MPI (rnnext.distributed), run as ``mpiexec -n 2`` subprocesses
with a timeout: a collective that fails inside pytest would hang it."""

import importlib.metadata
import os
import shutil
import signal
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

from conftest import rel_error

pytest.importorskip("mpi4py")

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.path.join(HERE, "distributed_run.py")
LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")


def _mpiexec() -> str:
    """The mpiexec of the mpich wheel (found through its installed files, also from a venv
    with --system-site-packages), else the one beside python, else PATH's."""
    try:
        files = importlib.metadata.distribution("mpich").files or []
        found = [str(f.locate()) for f in files if f.name == "mpiexec"]
    except importlib.metadata.PackageNotFoundError:
        found = []
    found += [os.path.join(d, "mpiexec") for d in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable))]
    for path in found:
        if os.access(path, os.X_OK):
            return path
    path = shutil.which("mpiexec")
    if path is None:
        pytest.fail("mpi4py is installed but no mpiexec was found: pip install mpich (or the 'test' extra)")
    return path


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    env["RNNEXT_NUM_THREADS"] = "1"  # 2 ranks on a 2-core machine
    return env


def run(args, ranks=None, timeout=120, cwd=None):
    """Run (under mpiexec -n ranks); past the timeout, kill mpiexec and every rank and fail."""
    cmd = ([_mpiexec(), "-n", str(ranks)] if ranks else []) + list(args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=cwd,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not end within {timeout} s\n{out[-2000:]}\n{err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.parametrize("case, dtype, tol", [
    ("tokens", "float64", 1e-9), ("tokens", "float32", 1e-5),
    ("bidirectional", "float64", 1e-9), ("bidirectional", "float32", 1e-5),
    ("classify", "float32", 1e-5), ("charlm", "float32", 1e-5),
])
def test_two_ranks_compute_what_one_process_computes_with_the_global_batch(tmp_path, case, dtype, tol):
    # 20 Adam steps with clipping; tokens and bidirectional mask steps out at random, so the
    # ranks' loss weights differ (a plain average over ranks would be wrong); classify
    # and charlm run the Trainer on built-in tasks (lengths; streams with a carried state).
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    ok(run([sys.executable, RUN, case, str(one), dtype]))
    ok(run([sys.executable, RUN, case, str(two), dtype], ranks=2))
    a, b = np.load(one), np.load(two)
    assert b["params"].dtype == np.dtype(dtype)
    assert rel_error(a["params"], b["params"]) < tol
    if "clipped" in a:
        assert a["clipped"] > 0  # clipping took part
    else:  # the validation, split across ranks and reduced, scores as one process does
        np.testing.assert_allclose(b["final"], a["final"], rtol=1e-4)
        np.testing.assert_allclose(b["val_loss"], a["val_loss"], rtol=1e-4)
        np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-4)


def _checkpoint_arrays(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_a_two_rank_checkpoint_resumes_exactly(tmp_path):
    text = tmp_path / "text.txt"
    with open(os.__file__, encoding="utf-8") as f:
        text.write_text(f.read(), encoding="utf-8")
    common = ["-m", "rnnext", "train", "--task", "charlm", "--data", str(text), "--hidden", "24", "--batch", "4",
              "--bptt", "16", "--eval-every", "10", "--quiet", "--schedule", "cosine", "--schedule-steps", "20"]
    py = sys.executable
    whole, part = tmp_path / "whole.npz", tmp_path / "part.npz"
    out = ok(run([py, *common, "--steps", "20", "--save", str(whole)], ranks=2)).stdout
    assert out.splitlines()[0] == "data-parallel over 2 ranks x 1 thread, global batch 8 (4 per rank)"
    assert out.count("held-out bits/char") == 1  # rank 0 alone prints
    ok(run([py, *common, "--steps", "10", "--save", str(part)], ranks=2))
    resumed = ok(run([py, "-m", "rnnext", "train", "--resume", str(part), "--steps", "20", "--save", str(part),
                      "--quiet"], ranks=2)).stdout
    assert "resuming at step 10" in resumed
    a, b = _checkpoint_arrays(whole), _checkpoint_arrays(part)
    assert set(a) == set(b) and "task/h" in a and a["task/h"].shape[-2] == 8  # both ranks' streams
    for key in a:
        if key != "meta":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert out.splitlines()[-1] == resumed.splitlines()[-1]
    # The same run in one process with the global batch.
    single = tmp_path / "single.npz"
    ok(run([py, *[("8" if c == "4" else c) for c in common], "--steps", "20", "--save", str(single)]))
    s = _checkpoint_arrays(single)
    assert rel_error(s["params"], a["params"]) < 1e-5
    assert rel_error(s["task/h"], a["task/h"]) < 1e-5


@pytest.mark.parametrize("case", ["raise", "kill"])
def test_a_failing_rank_ends_the_job(case):
    proc = run([sys.executable, RUN, case, "unused"], ranks=2, timeout=60)
    assert proc.returncode != 0
    if case == "raise":
        assert "RuntimeError: rank 1 breaks down at step 6" in proc.stderr
        assert "rank 1 of 2 failed" in proc.stderr


def test_mismatched_models_are_refused_on_every_rank():
    proc = run([sys.executable, RUN, "mismatch", "unused"], ranks=2, timeout=60)
    assert proc.returncode == 3, proc.stderr
    for rank in (0, 1):
        assert (f"rank {rank} refused: configuration: the ranks do not agree: model.hidden_size is 8 on rank 0 "
                f"but 9 on rank 1") in proc.stdout


def test_the_command_line_error_of_one_rank_ends_the_job(tmp_path):
    # A global batch of 2 charlm streams cannot hold this text: every rank fails, and
    # mpiexec reports it instead of waiting.
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("abc" * 20, encoding="utf-8")
    proc = run([sys.executable, "-m", "rnnext", "train", "--data", str(tiny), "--batch", "1"], ranks=2, timeout=60)
    assert proc.returncode != 0
    assert "rnnext train: error (rank " in proc.stderr and "of 2): data: the training part has" in proc.stderr


def test_a_plain_run_never_imports_mpi4py(tmp_path):
    code = ("import sys, rnnext.cli\n"
            "assert rnnext.cli.main(['train', '--task', 'reverse', '--steps', '2', '--quiet']) == 0\n"
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'\n")
    out = ok(run([sys.executable, "-c", code], cwd=tmp_path)).stdout
    assert not out.startswith("data-parallel")


def test_mpiexec_rnnext_train_reverse_solves_the_task(tmp_path):
    # The single-process default is --batch 64; two ranks of 32 make the same global batch.
    # --steps 4000 is the default step count, without the default 4.5-minute cap (a loaded machine).
    cmd = [sys.executable, "-m", "rnnext", "train", "--task", "reverse", "--batch", "32", "--steps", "4000", "--quiet"]
    proc = ok(run(cmd, ranks=2, timeout=600, cwd=tmp_path))
    lines = proc.stdout.splitlines()
    assert lines[0] == "data-parallel over 2 ranks x 1 thread, global batch 64 (32 per rank)"
    assert lines[-1].startswith("held-out sequence accuracy: ")
    assert float(lines[-1].split(": ")[1].split("%")[0]) >= 99.0, proc.stdout


def test_a_time_budget_ends_every_rank_at_the_same_step(tmp_path):
    # The ranks read their clocks at different moments: every rank uses rank 0's, or one
    # rank would stop while the other waits in the next Allreduce, and the cosine schedule
    # over the minutes would give each rank its own learning rate (with each rank's own
    # clock, put in by hand, the parameter checksum fails at step 100).
    proc = ok(run([sys.executable, "-m", "rnnext", "train", "--task", "reverse", "--batch", "8", "--minutes", "0.05",
                   "--eval-every", "50", "--quiet", "--save", str(tmp_path / "r.ckpt")], ranks=2, timeout=60))
    assert "for at most 0.05 minutes" in proc.stdout and "trained " in proc.stdout


def test_bad_arguments_are_refused_at_the_boundary():
    from rnnext import optim, tasks
    from rnnext.training import Trainer

    task = tasks.Reverse(4, 3, batch_size=3, heldout_size=20)
    with pytest.raises(ValueError, match=r"rank: expected an int in \[0, 2\), got 2"):
        task.shard(2, 2, lambda a: a)
    with pytest.raises(ValueError, match="4 ranks need a global batch of at least 4, got 3"):
        task.shard(0, 4, lambda a: a)
    assert task.shard(1, 2, lambda a: a) == 1  # rows 1 of 0, 1, 2
    with pytest.raises(ValueError, match="already sharded as rank 1 of 2"):
        task.shard(0, 2, lambda a: a)
    model = task.build_model(8)
    with pytest.raises(TypeError, match="dist: expected an rnnext.distributed.Distributed or None, got str"):
        Trainer(task, model, optim.Adam(model), dist="mpi")
    # Distributed itself, in a process of its own (MPI is initialised once per process).
    code = ("import pytest\nfrom rnnext.distributed import Distributed\n"
            "with pytest.raises(TypeError, match='comm: expected an mpi4py intracommunicator, got str'):\n"
            "    Distributed('world', abort_on_error=False)\n"
            "with pytest.raises(ValueError, match='check_every'):\n"
            "    Distributed(check_every=-1, abort_on_error=False)\n"
            "print('checked')\n")
    assert ok(run([sys.executable, "-c", code])).stdout == "checked\n"


def test_a_sharded_task_draws_its_rows_of_the_global_batch():
    # Rows r::n of what one process draws, for the generated tasks and the charlm streams.
    from rnnext import tasks

    for make in (lambda: tasks.Sentiment(batch_size=5, heldout_size=30, seed=2),
                 lambda: tasks.CharLM(os.__file__, batch_size=5, bptt=8, seed=2)):
        whole, part = make(), make()
        assert part.shard(1, 2, lambda a: a) == 2
        for _ in range(3):
            a, b = whole.next_batch(), part.next_batch()
            if isinstance(a, dict):
                assert set(a) == set(b)
                for k in a:
                    np.testing.assert_array_equal(b[k], a[k][1::2] if k == "lengths" else a[k][:, 1::2])
            else:
                for x, y in zip(a, b):
                    np.testing.assert_array_equal(y, x[:, 1::2])
