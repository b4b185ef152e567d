"""Typed use of the public API, checked by mypy in test_typing.py (not a test module)."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

import rnnext
from rnnext import _core
from rnnext.losses import softmax_cross_entropy
from rnnext.serialization import IncompatibleKeys


def train_step(rnn: rnnext.RNN, x: np.ndarray, targets: np.ndarray) -> float:
    logits, h_n = rnn(x)
    loss, dlogits = softmax_cross_entropy(logits, targets)
    rnn.zero_grad()
    dx, dh0 = rnn.backward(dlogits)
    rnnext.optim.SGD(rnn, lr=0.1).step()
    return loss


def round_trips(rnn: rnnext.RNN, folder: Path) -> List[rnnext.RNN]:
    rnn.save(folder / "m.npz")
    loaded: rnnext.RNN = rnnext.load(folder / "m.npz")
    sd: Dict[str, np.ndarray] = rnn.state_dict()
    keys: IncompatibleKeys = loaded.load_state_dict(sd)
    assert not keys.missing_keys
    weights: List[np.ndarray] = rnn.keras_weights()
    from_keras: rnnext.RNN = rnnext.RNN.from_keras_weights(weights)
    return [loaded, from_keras, copy.copy(rnn), copy.deepcopy(rnn), pickle.loads(pickle.dumps(rnn))]


def engine(core: _core.ModelF32, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    layout: List[Tuple[str, int, Tuple[int, ...]]] = core.layout
    params: np.ndarray = core.params
    return core.forward(x, None, None, None, x.shape[0], x.shape[1], False)


def pytorch_habits(rnn: rnnext.RNN, x: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> float:
    bf = rnnext.RNN(8, 32, 5, nonlinearity="relu", init="orthogonal", batch_first=True)
    y, h_n = bf(x, np.zeros((1, x.shape[0], 32)), lengths=lengths)
    last: np.ndarray = rnnext.gather_last(y, lengths, batch_first=True)
    loss, dlast = softmax_cross_entropy(last, labels, reduction="mean")
    dx, dh0 = bf.backward(rnnext.scatter_last(dlast, lengths, y, batch_first=True))
    bf.backward(dh_n=h_n)
    named: List[Tuple[str, np.ndarray]] = list(bf.named_parameters())
    total = sum(p.size for p in bf.parameters()) + len(named)
    opt = rnnext.optim.AdamW(bf, lr=1e-3, weight_decay=0.01)
    rnnext.optim.SGD(rnn, 0.1, weight_decay=1e-4).step()
    opt.step()
    return loss + total
