"""Text generation from a character model that carries its vocabulary (issue 15, point 5)."""

import inspect
import warnings

import numpy as np
import pytest
import reference

import rnnext
from rnnext import cli, tasks, textgen

VOCAB = "\n abcd" + textgen.UNKNOWN


@pytest.fixture
def model():
    return rnnext.RNN(4, 8, len(VOCAB), vocab_size=len(VOCAB), dtype="float64", seed=2)


def test_sample_text_default_temperature_is_the_command_lines():
    default = inspect.signature(tasks.sample_text).parameters["temperature"].default
    parser = cli.build_parser()
    args = parser.parse_args(["sample", "--checkpoint", "x"])
    assert default == args.temperature == 0.8
    assert tasks.sample_text is textgen.sample_text and tasks.complete is textgen.complete


def test_temperature_zero_is_greedy(model):
    got = textgen.sample_text(model, VOCAB, prime="ab", length=12, temperature=0)
    # independent: the NumPy reference forward over the growing text, argmax each time
    text = "ab"
    for _ in range(12):
        ids = np.array([VOCAB.index(c) for c in text])
        logits, _ = reference.forward(model.params, model.config, ids[:, None])
        text += VOCAB[int(np.argmax(logits[-1, 0]))]
    assert got == text[2:]
    with pytest.raises(ValueError, match="temperature"):
        textgen.sample_text(model, VOCAB, length=3, temperature=-1)


def test_sampling_follows_the_softmax_at_temperature_one(model):
    # the first character after the prime, drawn many times, against the NumPy probabilities
    ids = np.array([VOCAB.index(c) for c in "ab"])
    logits, _ = reference.forward(model.params, model.config, ids[:, None])
    z = logits[-1, 0] - logits[-1, 0].max()
    p = np.exp(z) / np.exp(z).sum()
    draws = [textgen.sample_text(model, VOCAB, "ab", length=1, temperature=1.0, seed=s) for s in range(3000)]
    freq = np.array([draws.count(c) for c in VOCAB]) / len(draws)
    assert np.max(np.abs(freq - p)) < 0.04


def test_unknown_characters_in_the_prime_warn_and_read_as_unknown(model):
    with pytest.warns(UserWarning, match="prime: the characters 'XY'.*U\\+FFFD"):
        a = textgen.sample_text(model, VOCAB, prime="aXbY", length=10, temperature=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = textgen.sample_text(model, VOCAB, prime="a\ufffdb\ufffd", length=10, temperature=0)
    assert a == b
    no_unknown = "\n abcd"
    m = rnnext.RNN(4, 8, len(no_unknown), vocab_size=len(no_unknown), seed=0)
    with pytest.raises(ValueError, match="prime: the characters 'X' are not in"):
        textgen.sample_text(m, no_unknown, prime="aX", length=3)


def test_a_model_file_keeps_the_vocabulary(model, tmp_path):
    path = tmp_path / "lm.npz"
    textgen.CharModel(model, VOCAB).save(path)
    lm = textgen.load(path)  # two lines from a file to text
    assert lm.vocab == VOCAB
    assert lm.sample("ab", 20, seed=1) == textgen.sample_text(model, VOCAB, "ab", 20, seed=1)
    plain = rnnext.load(path)  # still an ordinary model file
    np.testing.assert_array_equal(plain.flat_params, model.flat_params)
    model.save(tmp_path / "bare.npz")
    with pytest.raises(ValueError, match="no vocabulary"):
        textgen.load(tmp_path / "bare.npz")
    with pytest.raises(FileNotFoundError):
        textgen.load(tmp_path / "missing.npz")


def test_a_training_checkpoint_generates_text_in_two_lines(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("hello world, hello there\n" * 500, encoding="utf-8")
    ckpt = tmp_path / "lm.ckpt"
    assert cli.main(["train", "--data", str(text), "--steps", "3", "--batch", "4", "--hidden", "16",
                     "--save", str(ckpt), "--quiet"]) == 0
    lm = rnnext.textgen.load(ckpt)
    out = lm.sample("hel", length=30, seed=0)
    assert len(out) == 30 and set(out) <= set(lm.vocab)
    assert lm.complete("hel", k=3)
    # and exported to a model file, the same text
    lm.save(tmp_path / "lm.npz")
    assert rnnext.textgen.load(tmp_path / "lm.npz").sample("hel", length=30, seed=0) == out
