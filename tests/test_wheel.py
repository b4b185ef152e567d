"""The distributable wheel: built with the portable setting (RNNEXT_NATIVE=OFF), installed
into a fresh virtual environment without the system's packages, it imports with NumPy as
its only dependency and trains one step. Takes 1-2 minutes (a full C++ build); skip it
locally with `-m "not wheel"`."""

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


SMOKE = ROOT / "tests" / "wheel_smoke.py"  # also cibuildwheel's test-command


def run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_cibuildwheel_config_is_portable():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11: the test extra brings tomli
        tomllib = pytest.importorskip("tomli")
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    assert cfg["config-settings"]["cmake.define.RNNEXT_NATIVE"] == "OFF"
    assert set(cfg["linux"]["archs"]) == {"x86_64", "aarch64"}
    assert (ROOT / cfg["test-command"].split("{project}/")[1]).is_file()
    try:
        import cibuildwheel  # noqa: F401  (optional: validates every option name)
    except ImportError:
        return
    r = run([sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform", "linux", ROOT])
    ids = r.stdout.split()
    assert "cp311-manylinux_x86_64" in ids and "cp311-manylinux_aarch64" in ids, ids


@pytest.mark.wheel
@pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="under .ci/sanitize the suite tests the sanitized build; the plain run builds the wheel",
)
def test_portable_wheel_installs_and_runs_in_a_fresh_venv(tmp_path):
    dist, build = tmp_path / "dist", tmp_path / "build"
    # --no-cache-dir: pip would otherwise cache this wheel under the checkout's path (when
    # the folder's name looks like name-version) and reuse it for later builds of that path
    # with other settings, e.g. .ci/sanitize's.
    run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--no-cache-dir", "-w", dist,
         "-Ccmake.define.RNNEXT_NATIVE=OFF", f"-Cbuild-dir={build}"])
    (wheel,) = dist.glob("rnnext-*.whl")

    # The portable setting reached the compiler: no host-only instructions.
    assert "RNNEXT_NATIVE:BOOL=OFF" in (build / "CMakeCache.txt").read_text()
    rules = list(build.rglob("build.ninja")) + list(build.rglob("flags.make"))
    assert rules, "no build rules found"
    for f in rules:
        assert "-march=native" not in f.read_text(), f

    names = zipfile.ZipFile(wheel).namelist()
    for name in ("rnnext/__init__.py", "rnnext/_core.pyi", "rnnext/py.typed", "rnnext/serialization.py"):
        assert name in names, names
    assert any(n.startswith("rnnext/_core.") and n.endswith(".so") for n in names), names

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel])
    r = run([python, SMOKE], cwd=tmp_path)
    assert "smoke ok" in r.stdout
