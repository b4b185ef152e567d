"""Each architecture example of examples/ runs and learns its task, scored on inputs it was
not trained on (fresh noisy inputs, or sequences kept out of training)."""

import pathlib

import pytest

from conftest import load_script

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"

# example file -> the least held-out score (accuracy) its main() must return; seen on
# 2026-12-01 (AVX-512, AVX2 and baseline kernels): 0.998, 0.998, 0.990-0.994, 1.000, 1.000
CASES = {
    "one_to_one.py": 0.98,
    "one_to_many.py": 0.98,
    "many_to_one.py": 0.95,
    "many_to_many_equal.py": 0.95,
    "many_to_many_unequal.py": 0.95,
}


def load(name):
    return load_script(EXAMPLES / name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_learns(name, capsys):
    score = load(name).main()
    out = capsys.readouterr().out
    assert score >= CASES[name], out
    assert "held-out" in out  # it reports what it learned, on what


def test_examples_exist():
    assert set(CASES) <= {p.name for p in EXAMPLES.glob("*.py")}
