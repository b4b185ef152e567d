"""The package is typed: mypy accepts the package (with the compiled module's stubs),
the examples and a typed usage snippet; stubtest checks the stubs against the compiled
module; and mypy does report a real type error (so a clean run means something)."""

import glob
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "rnnext"


def mypy(*targets, cache):
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(cache)]
    return subprocess.run(cmd + [str(t) for t in targets], cwd=ROOT, capture_output=True, text=True)


def test_stub_and_marker_files_exist():
    assert (PACKAGE / "py.typed").is_file()
    assert (PACKAGE / "_core.pyi").is_file()


def test_mypy_accepts_package_examples_and_usage(tmp_path):
    examples = sorted(glob.glob(str(ROOT / "examples" / "*.py")))
    r = mypy(PACKAGE, ROOT / "tests" / "typing_usage.py", *examples, cache=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success" in r.stdout


def test_mypy_reports_misuse_through_the_stubs(tmp_path):
    bad = tmp_path / "bad_usage.py"
    bad.write_text(
        textwrap.dedent(
            """
            from rnnext import _core
            import rnnext

            def f(core: _core.ModelF64, rnn: rnnext.RNN) -> None:
                n: str = core.has_forward          # bool, not str
                core.zero_grad(1)                  # takes no argument
                rnn.save(3)                        # a path, not an int
            """
        )
    )
    r = mypy(PACKAGE, bad, cache=tmp_path / "cache")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.count("bad_usage.py") == 3, r.stdout


def test_stubs_match_the_compiled_module(tmp_path):
    pytest.importorskip("rnnext._core")
    # pybind11 classes have their own metaclass, which a stub cannot state.
    allow = tmp_path / "allowlist.txt"
    allow.write_text("rnnext._core.ModelF32\nrnnext._core.ModelF64\n")
    env = dict(os.environ, MYPYPATH=str(ROOT / "python"))
    r = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "rnnext._core", "--allowlist", str(allow),
         "--mypy-config-file", str(ROOT / "pyproject.toml")],
        cwd=tmp_path, capture_output=True, text=True, env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
