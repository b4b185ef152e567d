"""Each architecture example of examples/ runs and learns its task."""

import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"

# example file -> the least score (accuracy) its main() must return
CASES = {
    "one_to_one.py": 1.0,
    "one_to_many.py": 1.0,
    "many_to_one.py": 0.95,
    "many_to_many_equal.py": 0.95,
    "many_to_many_unequal.py": 1.0,
}


def load(name):
    spec = importlib.util.spec_from_file_location(name[:-3], EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_learns(name, capsys):
    score = load(name).main()
    assert score >= CASES[name], capsys.readouterr().out
    assert capsys.readouterr().out.strip()  # it reports what it learned


def test_examples_exist():
    assert set(CASES) <= {p.name for p in EXAMPLES.glob("*.py")}
