"""Smoke test of an installed rnnext (not a pytest module): run with the environment's
python after installing a wheel. Used by tests/test_wheel.py and by cibuildwheel."""

import importlib.metadata
import pathlib
import sys

import numpy as np

import rnnext

assert "site-packages" in rnnext.__file__, f"not the installed package: {rnnext.__file__}"
assert rnnext.__version__ == importlib.metadata.version("rnnext")
runtime = [r for r in importlib.metadata.requires("rnnext") or [] if "extra ==" not in r]
assert [r.split(">")[0].split("=")[0].strip() for r in runtime] == ["numpy"], runtime
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    sys.exit("torch is importable: not a fresh environment")
assert (pathlib.Path(rnnext.__file__).parent / "py.typed").is_file()

rnn = rnnext.RNN(3, 8, 2, seed=0)
x = np.random.default_rng(0).standard_normal((5, 4, 3)).astype(np.float32)
targets = np.zeros((5, 4), dtype=np.int64)
opt = rnnext.optim.SGD(rnn, lr=0.1)
losses = []
for _ in range(3):
    logits, h_n = rnn(x)
    loss, grad = rnnext.losses.softmax_cross_entropy(logits, targets)
    opt.zero_grad()
    rnn.backward(grad)
    opt.step()
    losses.append(loss)
assert logits.shape == (5, 4, 2) and h_n.shape == (4, 8)
assert losses[-1] < losses[0], losses
print("smoke ok", rnnext.__version__)
