"""Autocompletion: rnnext.tasks.complete (beam search over RNN.step) and `rnnext complete`.

The reference enumerates every possible completion of a tiny model and scores each with the
plain NumPy forward of tests/reference.py and a NumPy softmax, independent of the engine's
step() and of the search.
"""

import itertools
import subprocess
import sys
import warnings

import numpy as np
import pytest
import reference

import rnnext
from rnnext import tasks, textgen

VOCAB = " abc"  # the space is the only stop character present
PREFIX = "ab"


@pytest.fixture(scope="module")
def tiny():
    model = rnnext.RNN(3, 5, len(VOCAB), vocab_size=len(VOCAB), dtype="float64", seed=3)
    model.params["W_y"][...] *= 3.0  # sharper distributions: fewer near-ties
    return model


def reference_probability(model, prefix, text):
    """Product of the NumPy model's softmax probabilities of text's characters after prefix."""
    ids = np.array([VOCAB.index(c) for c in prefix + text])
    logits, _ = reference.forward(model.params, model.config, ids[:-1, None])
    z = logits[:, 0] - logits[:, 0].max(axis=-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    steps = np.arange(len(prefix) - 1, len(ids) - 1)
    return float(np.prod(p[steps, ids[len(prefix):]]))


def every_completion(max_length, stop=" "):
    """Every string the search may return: ends at its first stop character, or has max_length characters."""
    body = [c for c in VOCAB if c not in stop]
    for n in range(1, max_length + 1):
        for head in itertools.product(body, repeat=n - 1):
            for last in VOCAB if n == max_length else stop:
                yield "".join(head) + last


@pytest.mark.parametrize("max_length", [1, 3, 5])
def test_exact_against_enumerating_every_string(tiny, max_length):
    truth = {s: reference_probability(tiny, PREFIX, s) for s in every_completion(max_length)}
    assert sum(truth.values()) == pytest.approx(1.0, abs=1e-9)  # the enumeration is complete
    ranked = sorted(truth.items(), key=lambda kv: -kv[1])
    k = min(8, len(ranked))
    got = tasks.complete(tiny, VOCAB, PREFIX, k=k, max_length=max_length, stop=" ")
    assert [t for t, _ in got] == [t for t, _ in ranked[:k]]
    np.testing.assert_allclose([p for _, p in got], [p for _, p in ranked[:k]], rtol=1e-9)


def test_all_completions_sum_to_one_and_are_ordered(tiny):
    n = len(list(every_completion(4)))  # 1 + 3 + 9 + 27 * 4 = 121
    got = textgen.complete(tiny, VOCAB, PREFIX, k=n + 10, max_length=4, stop=" ")
    assert len(got) == n
    probs = [p for _, p in got]
    assert probs == sorted(probs, reverse=True)
    assert sum(probs) == pytest.approx(1.0, abs=1e-9)


def test_stop_characters_end_a_completion(tiny):
    for stop in (" ", "a ", "c"):
        got = tasks.complete(tiny, VOCAB, "a", k=10, max_length=4, stop=stop)
        for text, _ in got:
            inner = [c for c in text[:-1] if c in stop]
            assert not inner, (stop, text)
            assert text[-1] in stop or len(text) == 4
    # no stop character: every completion is max_length long
    assert all(len(t) == 3 for t, _ in tasks.complete(tiny, VOCAB, "a", k=10, max_length=3, stop=""))


def test_a_narrow_beam_finds_only_completions_of_the_exact_set(tiny):
    exact = dict(tasks.complete(tiny, VOCAB, PREFIX, k=200, max_length=5, stop=" "))
    for beam in (1, 2, 4):
        got = tasks.complete(tiny, VOCAB, PREFIX, k=5, max_length=5, stop=" ", beam=beam)
        assert got and len(got) <= 5
        for text, p in got:
            assert p == pytest.approx(exact[text], rel=1e-9)  # true probabilities, even when not the top 5


def test_stacked_float32_model_matches_the_exact_search_of_a_float64_copy():
    vocab = "\n xyz"
    m32 = rnnext.RNN(4, 6, len(vocab), vocab_size=len(vocab), num_layers=2, seed=5)
    m64 = rnnext.RNN(4, 6, len(vocab), vocab_size=len(vocab), num_layers=2, seed=5, dtype="float64")
    m64.flat_params[...] = m32.flat_params
    a = tasks.complete(m32, vocab, "xy", k=5, max_length=4)
    b = tasks.complete(m64, vocab, "xy", k=5, max_length=4)
    assert [t for t, _ in a] == [t for t, _ in b]
    np.testing.assert_allclose([p for _, p in a], [p for _, p in b], rtol=1e-4)


def test_a_batch_first_model_completes_as_its_time_major_twin(tiny):
    twin = rnnext.RNN(**dict(tiny.config, batch_first=True))
    twin.flat_params[...] = tiny.flat_params
    assert tasks.complete(twin, VOCAB, PREFIX, k=6, max_length=4) == tasks.complete(tiny, VOCAB, PREFIX, k=6,
                                                                                   max_length=4)
    assert textgen.sample_text(twin, VOCAB, PREFIX, 15, seed=2) == textgen.sample_text(tiny, VOCAB, PREFIX, 15, seed=2)


def test_bad_input(tiny):
    with pytest.raises(ValueError, match="vocab: expected a non-empty"):
        tasks.complete(tiny, "", "a")
    with pytest.raises(TypeError, match="vocab"):
        tasks.complete(tiny, list(VOCAB), "a")
    with pytest.raises(ValueError, match="vocab: the model reads 4"):
        tasks.complete(tiny, "abc", "a")
    with pytest.raises(ValueError, match="distinct"):
        tasks.complete(tiny, "aabc", "a")
    with pytest.raises(ValueError, match="prefix: the characters 'xz' are not in"):
        tasks.complete(tiny, VOCAB, "zax")  # no unknown symbol to read them as
    for k in (0, -1):
        with pytest.raises(ValueError, match="k: expected an int >= 1"):
            tasks.complete(tiny, VOCAB, "a", k=k)
    with pytest.raises(TypeError, match="k: expected an int"):
        tasks.complete(tiny, VOCAB, "a", k=2.0)
    with pytest.raises(ValueError, match="max_length"):
        tasks.complete(tiny, VOCAB, "a", max_length=0)
    with pytest.raises(ValueError, match="beam"):
        tasks.complete(tiny, VOCAB, "a", beam=0)
    with pytest.raises(TypeError, match="stop"):
        tasks.complete(tiny, VOCAB, "a", stop=None)
    with pytest.raises(TypeError, match="prefix"):
        tasks.complete(tiny, VOCAB, 12)
    with pytest.raises(TypeError, match="model"):
        tasks.complete("model", VOCAB, "a")
    no_vocab = rnnext.RNN(3, 4, 4)
    with pytest.raises(ValueError, match="vocab"):
        tasks.complete(no_vocab, VOCAB, "a")


def test_characters_outside_the_vocabulary_read_as_unknown_with_a_warning():
    vocab = " ab" + textgen.UNKNOWN
    model = rnnext.RNN(3, 5, len(vocab), vocab_size=len(vocab), dtype="float64", seed=1)
    with pytest.warns(UserWarning, match="'Z'.*unknown symbol"):
        got = tasks.complete(model, vocab, "aZ", k=3, max_length=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = tasks.complete(model, vocab, "a" + textgen.UNKNOWN, k=3, max_length=3)
    assert got == same


# ---------------------------------------------------------------------------- command line
def run_cli(*args, cwd):
    code = "import sys\nfrom rnnext.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("complete")
    text = folder / "corpus.txt"
    text.write_text("def f(x):\n\treturn x\n" * 400 + "class A:\n    pass\n" * 300, encoding="utf-8")
    ckpt = folder / "lm.ckpt"
    proc = run_cli("train", "--data", str(text), "--steps", "30", "--batch", "8", "--hidden", "32",
                   "--save", str(ckpt), "--quiet", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder, ckpt


def test_cli_prints_probability_tab_text_most_probable_first(trained):
    folder, ckpt = trained
    proc = run_cli("complete", "--checkpoint", str(ckpt), "--k", "4", "--max-length", "6", "def f(x):", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    lm = textgen.load(ckpt)
    want = lm.complete("def f(x):", k=4, max_length=6)
    lines = proc.stdout.splitlines()
    assert len(lines) == 4
    for line, (text, p) in zip(lines, want):
        prob, shown = line.split("\t")
        assert float(prob) == pytest.approx(p, rel=1e-5)
        assert shown == text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
        assert "\n" not in shown and "\t" not in shown


def test_cli_warns_in_one_line_about_characters_outside_the_vocabulary(trained):
    folder, ckpt = trained
    proc = run_cli("complete", "--checkpoint", str(ckpt), "--k", "2", "def \u00e9", cwd=folder)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2
    assert proc.stderr.strip() == ("rnnext complete: warning: prefix: the characters '\u00e9' are not in the model's "
                                   "vocabulary; read as the unknown symbol U+FFFD")


def test_cli_refuses_a_checkpoint_that_is_not_a_character_model(tmp_path):
    ckpt = tmp_path / "rev.ckpt"
    assert run_cli("train", "--task", "classify", "--steps", "3", "--save", str(ckpt), "--quiet",
                   cwd=tmp_path).returncode == 0
    proc = run_cli("complete", "--checkpoint", str(ckpt), "ab", cwd=tmp_path)
    assert proc.returncode == 1
    assert "--checkpoint" in proc.stderr and "not a character model" in proc.stderr
    assert "'classify'" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("complete", "--checkpoint", str(ckpt), "--k", "0", "ab", cwd=tmp_path)
    assert proc.returncode == 2 and "--k" in proc.stderr
