"""bench/bench_charlm.py compares like with like: its PyTorch side starts from rnnext's
parameters, scores the held-out text as rnnext does, and after the same training steps
(same batches, carried state, Adam, clipping) still agrees with rnnext. Correctness only;
no timing is asserted."""

import pathlib

import numpy as np
import pytest

from rnnext.tasks import CharLM

from conftest import load_script

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench" / "bench_charlm.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = ["def ", "self", "(x):\n", "    return ", "x + 1", "\n", "import os\n", "# a comment\n"]
    path = tmp_path_factory.mktemp("charlm") / "corpus.txt"
    path.write_text("".join(rng.choice(words, 300)), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("layers", [1, 2])
def test_torch_side_trains_the_same_model_as_rnnext(bench, corpus, layers):
    args = bench.parse_args(["--data", corpus, "--hidden", "24", "--layers", str(layers), "--batch", "4",
                             "--bptt", "16", "--lr", "1e-2", "--clip", "0.5", "--threads", "1"])
    kw = dict(data=corpus, batch_size=4, bptt=16, embedding_size=args.embedding, seed=0)
    first = CharLM(**kw)
    model = first.build_model(args.hidden, args.layers, seed=0)
    ours = bench.RnnextSide(args, first, "rnnext", 1, model.__deepcopy__({}))
    theirs = bench.TorchSide(args, CharLM(**kw), "torch", 1, model)
    before = ours.evaluate(final=True)
    assert theirs.evaluate(final=True) == pytest.approx(before, abs=1e-5)
    for _ in range(40):  # crosses a pass over the text: the carried state is reset on both sides
        ours.train_step()
        theirs.train_step()
    assert first.pass_index >= 1
    after = ours.evaluate(final=True)
    assert after < before - 0.5  # it learned, so the agreement below is not trivial
    assert theirs.evaluate(final=True) == pytest.approx(after, abs=1e-5)
    # The same parameters to float32 rounding (6e-7 here): PyTorch's, read back through the
    # interop table (b_h = bias_ih + bias_hh), against rnnext's.
    back = model.__deepcopy__({})
    back.load_state_dict(theirs.net.state_dict(), rnn_prefix="rnn.", linear_prefix="out.")
    np.testing.assert_allclose(back.flat_params, ours.model.flat_params, rtol=0, atol=1e-5)
