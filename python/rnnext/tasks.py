"""Built-in training tasks, all generated or read locally (nothing is downloaded).

A task owns its data: it builds a fitting model, draws the next training batch, computes the
loss and runs ``model.backward`` (``train_step``), and scores a model on held-out data
(``evaluate``). Its ``state_dict()`` holds everything needed to continue the data stream
exactly (random generator state, position, carried hidden state).

- ``reverse``:  k binary numbers in, the same numbers reversed out (the 1, 3, 5 -> 5, 3, 1
  example of the notes); exact-sequence accuracy.
- ``adding``:   the adding problem (Le, Jaitly & Hinton 2015); mean squared error against the
  1/6 of always predicting 1.
- ``charlm``:   a character language model on a text file or, by default, on the Python
  standard library's own source; held-out bits per character.
- ``classify``: many-to-one, sentiment style: does a sequence of words hold more positive
  than negative ones?; accuracy.

Text generation from a character model lives in ``rnnext.textgen``; ``sample_text``,
``complete``, ``encode`` and ``UNKNOWN`` are importable from here too.
"""

from __future__ import annotations

import glob
import hashlib
import math
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Protocol, Tuple, runtime_checkable

import numpy as np

from ._checks import check_float, check_int
from .losses import mse, sigmoid_cross_entropy, softmax_cross_entropy
from .rnn import RNN
from .textgen import UNKNOWN, complete, encode, sample_text

__all__ = ["TaskProtocol", "Task", "Reverse", "Adding", "Sentiment", "CharLM", "TASKS", "get_task",
           "stdlib_corpus", "file_corpus", "encode", "UNKNOWN", "sample_text", "complete"]

LN2 = math.log(2.0)
# Held-out sets come from this fixed seed, not from the run's seed, so that runs with
# different seeds are scored on the same sequences.
HELDOUT_SEED = 20150403


def _rng_state(rng: np.random.Generator) -> Dict[str, Any]:
    return dict(rng.bit_generator.state)


def _set_rng_state(rng: np.random.Generator, state: Any) -> None:
    try:
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"state: the random generator state is not valid: {e}") from e


@runtime_checkable
class TaskProtocol(Protocol):
    """What ``rnnext.Trainer`` needs of a task: any object with these two methods will do
    (no subclassing). An optional ``metric`` attribute names the metric in the log lines;
    checkpoints also need ``name``, ``config()``, ``meta()``, ``state_dict()`` and
    ``load_state_dict()`` (as ``Task`` has)."""

    def train_step(self, model: RNN) -> float:
        """Draw the next batch, run forward, loss and backward (adding into ``model.grads``);
        return the loss."""

    def evaluate(self, model: RNN, final: bool = False) -> Dict[str, float]:
        """``{"loss": ..., "metric": ...}`` on held-out data (``final``: all of it)."""


class Task:
    """Base class of the built-in tasks (see the module docstring); it follows
    ``TaskProtocol`` and adds what checkpoints and the command line use."""

    name = ""
    metric = ""  # what evaluate()["metric"] measures
    loss_name = ""  # what evaluate()["loss"] and train_step() measure
    higher_is_better = False
    # Training defaults used by the command line (and a good start in Python).
    defaults: Dict[str, Any] = {}
    batch_size: int  # sequences per training batch

    def config(self) -> Dict[str, Any]:
        """Constructor arguments (JSON-able): ``type(task)(**task.config())`` rebuilds it."""
        raise NotImplementedError

    def meta(self) -> Dict[str, Any]:
        """Facts about the data a checkpoint keeps (JSON-able), checked again on resume."""
        return {}

    def build_model(self, hidden_size: int, num_layers: int = 1, seed: Optional[int] = None) -> RNN:
        raise NotImplementedError

    def train_step(self, model: RNN) -> float:
        """Draw the next batch, run forward, loss and backward (adding into ``model.grads``);
        return the loss."""
        raise NotImplementedError

    def evaluate(self, model: RNN, final: bool = False) -> Dict[str, float]:
        """``{"loss": ..., "metric": ...}`` on held-out data (``final``: all of it)."""
        raise NotImplementedError

    def format_metric(self, value: float) -> str:
        """The summary line printed at the end of training."""
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        raise NotImplementedError

    # Data-parallel training (rnnext.distributed): rank r of n draws rows r::n of the
    # batches a single process draws, and evaluates on its share of the held-out data.
    _allreduce: Optional[Callable[[np.ndarray], np.ndarray]] = None
    _shard: Optional[Tuple[int, int]] = None

    def shard(self, rank: int, size: int, allreduce: Callable[[np.ndarray], np.ndarray]) -> int:
        """From now on draw rows ``rank::size`` of each batch and evaluate on a share of the
        held-out data; ``allreduce`` (an in-place sum over ranks) makes ``evaluate`` return
        the figures of all of it, on every rank. Returns this rank's number of rows (the
        built-in losses weight every row alike)."""
        size = check_int("size", size, 1)
        rank = check_int("rank", rank, 0)
        if rank >= size:
            raise ValueError(f"rank: expected an int in [0, {size}), got {rank}")
        if self._shard is not None:
            raise ValueError(f"shard: the task is already sharded as rank {self._shard[0]} of {self._shard[1]}")
        if self.batch_size < size:  # every rank needs a row
            raise ValueError(f"batch_size: {size} ranks need a global batch of at least {size}, got {self.batch_size}")
        self._shard, self._allreduce = (rank, size), allreduce
        return len(range(rank, self.batch_size, size))

    def _over_ranks(self, sums: List[float]) -> np.ndarray:
        """``sums`` added over all ranks (unchanged in a single process)."""
        a = np.array(sums, np.float64)
        return a if self._allreduce is None else self._allreduce(a)

    def _mean_over_ranks(self, result: Dict[str, float], weight: float) -> Dict[str, float]:
        """Means over this rank's share (of ``weight`` units) made means over all of it."""
        if self._allreduce is None:
            return result
        s = self._over_ranks([result["loss"] * weight, result["metric"] * weight, weight])
        return {"loss": float(s[0] / s[2]), "metric": float(s[1] / s[2])}


def _rows(batch: Dict[str, np.ndarray], rows: slice) -> Dict[str, np.ndarray]:
    """The sequences ``rows`` of a batch (batch axis 1, of ``lengths`` 0)."""
    return {name: arr[rows] if name == "lengths" else arr[:, rows] for name, arr in batch.items()}


# --------------------------------------------------------------------------- generated tasks
class _GeneratedTask(Task):
    """Fresh random batches every step; a fixed held-out set the training batches never
    contain (rows that would repeat a held-out sequence are drawn again)."""

    def __init__(self, batch_size: int, heldout_size: int, seed: int) -> None:
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.heldout_size = check_int("heldout_size", heldout_size, 1)
        self.seed = check_int("seed", seed, 0)
        self.rng = np.random.default_rng(seed)
        self.heldout = self.generate(np.random.default_rng(HELDOUT_SEED), self.heldout_size)
        keys = self.keys(self.heldout)
        self._heldout_keys = None if keys is None else set(keys)

    # A batch is a dict of arrays: x, target, mask, and optionally lengths.
    def generate(self, rng: np.random.Generator, n: int) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def keys(self, batch: Dict[str, np.ndarray]) -> Optional[List[bytes]]:
        """One hashable key per sequence, or None when repeats are impossible in practice."""
        return None

    def loss(self, out: np.ndarray, batch: Dict[str, np.ndarray]) -> Tuple[float, np.ndarray]:
        raise NotImplementedError

    def shard(self, rank: int, size: int, allreduce: Callable[[np.ndarray], np.ndarray]) -> int:
        rows = super().shard(rank, size, allreduce)
        self.heldout = _rows(self.heldout, slice(rank, None, size))
        return rows

    def next_batch(self) -> Dict[str, np.ndarray]:
        batch = self._whole_batch()
        return batch if self._shard is None else _rows(batch, slice(self._shard[0], None, self._shard[1]))

    def _whole_batch(self) -> Dict[str, np.ndarray]:
        batch = self.generate(self.rng, self.batch_size)
        if self._heldout_keys is None:
            return batch
        for _ in range(100):
            clash = [i for i, k in enumerate(self.keys(batch) or []) if k in self._heldout_keys]
            if not clash:
                return batch
            fresh = self.generate(self.rng, len(clash))
            for name, arr in batch.items():
                axis = 0 if name == "lengths" else 1
                idx: List[Any] = [slice(None)] * arr.ndim
                idx[axis] = clash
                arr[tuple(idx)] = fresh[name]
        raise RuntimeError(
            f"{self.name}: nearly every sequence drawn is in the held-out set; the task's space of "
            "sequences is too small for its heldout_size"
        )

    def train_step(self, model: RNN) -> float:
        batch = self.next_batch()
        out, _ = model(batch["x"], lengths=batch.get("lengths"))
        loss, grad = self.loss(out, batch)
        model.backward(grad, wrt="logits", need_dx=False)  # x is data: no dL/dx
        return loss

    def _heldout_outputs(self, model: RNN) -> np.ndarray:
        was_training = model.training
        model.eval()
        try:
            out, _ = model(self.heldout["x"], lengths=self.heldout.get("lengths"))
        finally:
            model.train(was_training)
        return out

    def state_dict(self) -> Dict[str, Any]:
        return {"rng": _rng_state(self.rng)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if not isinstance(state, dict) or set(state) != {"rng"}:
            raise ValueError(f"state: expected a dict with the key 'rng', got {state!r:.200}")
        _set_rng_state(self.rng, state["rng"])


class Reverse(_GeneratedTask):
    """Sequence reversal, the worked example of the notes generalised.

    ``num_items`` numbers of ``num_bits`` bits (most significant first) arrive one per step;
    then for ``num_items`` more steps a "go" input channel is 1 and the network must output
    the numbers in reverse order, one per step, as ``num_bits`` independent sigmoid bits.
    So T_x = T_y = num_items inside sequences of 2 * num_items steps; the loss (binary
    cross-entropy) counts only the output steps. The metric is the fraction of held-out
    sequences whose every output bit is right.
    """

    name = "reverse"
    metric = "sequence accuracy"
    loss_name = "binary cross-entropy per output bit"
    higher_is_better = True
    defaults = dict(hidden=128, layers=1, optimizer="adam", lr=3e-3, clip=1.0, steps=4000, minutes=4.5,
                    eval_every=500, schedule="cosine")

    def __init__(
        self, num_items: int = 8, num_bits: int = 3, *, batch_size: int = 64, heldout_size: int = 1000, seed: int = 0
    ) -> None:
        self.num_items = check_int("num_items", num_items, 1)
        self.num_bits = check_int("num_bits", num_bits, 1)
        bits = self.num_items * self.num_bits
        if bits > 62:
            raise ValueError(f"num_items * num_bits: expected at most 62, got {bits}")
        if 2**bits < 10 * heldout_size:
            raise ValueError(
                f"num_items * num_bits: {bits} bits give {2**bits} sequences, fewer than 10 * heldout_size = "
                f"{10 * heldout_size}; training needs sequences outside the held-out set"
            )
        super().__init__(batch_size, heldout_size, seed)

    def config(self) -> Dict[str, Any]:
        return dict(num_items=self.num_items, num_bits=self.num_bits, batch_size=self.batch_size,
                    heldout_size=self.heldout_size, seed=self.seed)

    def build_model(self, hidden_size: int, num_layers: int = 1, seed: Optional[int] = None) -> RNN:
        return RNN(self.num_bits + 1, hidden_size, self.num_bits, num_layers=num_layers, seed=seed)

    def generate(self, rng: np.random.Generator, n: int) -> Dict[str, np.ndarray]:
        k, nb = self.num_items, self.num_bits
        bits = rng.integers(0, 2, size=(k, n, nb)).astype(np.float32)  # (k, B, bits)
        x = np.zeros((2 * k, n, nb + 1), np.float32)
        x[:k, :, :nb] = bits
        x[k:, :, nb] = 1.0  # "go": the output phase
        target = np.zeros((2 * k, n, nb), np.float32)
        target[k:] = bits[::-1]
        mask = np.zeros((2 * k, n), np.float32)
        mask[k:] = 1.0
        return dict(x=x, target=target, mask=mask)

    def keys(self, batch: Dict[str, np.ndarray]) -> List[bytes]:
        bits = batch["x"][: self.num_items, :, : self.num_bits].astype(np.uint8)
        return [bits[:, b].tobytes() for b in range(bits.shape[1])]

    def loss(self, out: np.ndarray, batch: Dict[str, np.ndarray]) -> Tuple[float, np.ndarray]:
        return sigmoid_cross_entropy(out, batch["target"], batch["mask"], reduction="mean")

    def evaluate(self, model: RNN, final: bool = False) -> Dict[str, float]:
        out = self._heldout_outputs(model)
        loss, _ = self.loss(out, self.heldout)
        k = self.num_items
        right = (out[k:] > 0) == (self.heldout["target"][k:] > 0.5)  # (k, B, bits)
        return self._mean_over_ranks({"loss": loss, "metric": float(np.mean(right.all(axis=(0, 2))))},
                                     out.shape[1])

    def format_metric(self, value: float) -> str:
        return f"held-out sequence accuracy: {100 * value:.2f}% ({self.heldout_size} sequences)"


class Adding(_GeneratedTask):
    """The adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015).

    Two input channels over ``seq_len`` steps: a value drawn uniformly from [0, 1), and a
    marker that is 1 at exactly two steps (one in each half of the sequence). The target,
    read at the last step only, is the sum of the two marked values. Always predicting 1
    scores a mean squared error of Var(u1 + u2) = 1/6; the metric is the held-out MSE.
    """

    name = "adding"
    metric = "MSE"
    loss_name = "squared error at the last step"
    defaults = dict(hidden=100, layers=1, optimizer="adam", lr=1e-3, clip=1.0, steps=12000, minutes=4.5,
                    eval_every=1000, schedule="cosine")
    BASELINE = 1.0 / 6.0

    def __init__(self, seq_len: int = 100, *, batch_size: int = 50, heldout_size: int = 1000, seed: int = 0) -> None:
        self.seq_len = check_int("seq_len", seq_len, 2)
        super().__init__(batch_size, heldout_size, seed)

    def config(self) -> Dict[str, Any]:
        return dict(seq_len=self.seq_len, batch_size=self.batch_size, heldout_size=self.heldout_size, seed=self.seed)

    def build_model(self, hidden_size: int, num_layers: int = 1, seed: Optional[int] = None) -> RNN:
        # IRNN: relu states, W_h = I, zero biases.
        return RNN(2, hidden_size, 1, nonlinearity="relu", init="identity", num_layers=num_layers, seed=seed)

    def generate(self, rng: np.random.Generator, n: int) -> Dict[str, np.ndarray]:
        T, half = self.seq_len, self.seq_len // 2
        x = np.zeros((T, n, 2), np.float32)
        x[:, :, 0] = rng.random((T, n))
        first = rng.integers(0, half, size=n)
        second = rng.integers(half, T, size=n)
        cols = np.arange(n)
        x[first, cols, 1] = 1.0
        x[second, cols, 1] = 1.0
        target = np.zeros((T, n, 1), np.float32)
        target[-1, :, 0] = x[first, cols, 0] + x[second, cols, 0]
        mask = np.zeros((T, n), np.float32)
        mask[-1] = 1.0
        return dict(x=x, target=target, mask=mask)

    def loss(self, out: np.ndarray, batch: Dict[str, np.ndarray]) -> Tuple[float, np.ndarray]:
        return mse(out, batch["target"], batch["mask"], reduction="mean")

    def evaluate(self, model: RNN, final: bool = False) -> Dict[str, float]:
        loss, _ = self.loss(self._heldout_outputs(model), self.heldout)
        return self._mean_over_ranks({"loss": loss, "metric": loss}, self.heldout["x"].shape[1])

    def format_metric(self, value: float) -> str:
        return (f"held-out MSE: {value:.5f} (always predicting 1 scores 1/6 = {self.BASELINE:.4f}: "
                f"{self.BASELINE / max(value, 1e-12):.1f}x lower)")


class Sentiment(_GeneratedTask):
    """Many-to-one classification in the style of sentiment analysis (the notes' 004).

    A "review" is a sequence of ``min_len`` to ``max_len`` word ids from a vocabulary of
    ``vocab_size`` words: the first quarter of the ids are positive words, the second quarter
    negative ones, the rest neutral. Its label is 1 when it holds more positive than
    negative words, else 0 (ties are never drawn). Sequences of different lengths share a
    padded batch (``lengths``); the two-way softmax output is read at each sequence's last
    word only. The metric is held-out accuracy (chance: 1/2).
    """

    name = "classify"
    metric = "accuracy"
    loss_name = "cross-entropy per sequence (nats)"
    higher_is_better = True
    defaults = dict(hidden=64, layers=1, optimizer="adam", lr=3e-3, clip=1.0, steps=2000, minutes=4.5,
                    eval_every=250, schedule="cosine")

    def __init__(
        self,
        min_len: int = 10,
        max_len: int = 30,
        vocab_size: int = 16,
        *,
        batch_size: int = 64,
        heldout_size: int = 1000,
        seed: int = 0,
    ) -> None:
        self.min_len = check_int("min_len", min_len, 1)
        self.max_len = check_int("max_len", max_len, self.min_len)
        self.vocab_size = check_int("vocab_size", vocab_size, 4)
        super().__init__(batch_size, heldout_size, seed)

    def config(self) -> Dict[str, Any]:
        return dict(min_len=self.min_len, max_len=self.max_len, vocab_size=self.vocab_size,
                    batch_size=self.batch_size, heldout_size=self.heldout_size, seed=self.seed)

    def build_model(self, hidden_size: int, num_layers: int = 1, seed: Optional[int] = None) -> RNN:
        return RNN(16, hidden_size, 2, vocab_size=self.vocab_size, num_layers=num_layers, seed=seed)

    def word_sentiment(self, ids: np.ndarray) -> np.ndarray:
        """+1 for positive words, -1 for negative ones, 0 for neutral ones."""
        q = self.vocab_size // 4
        return np.where(ids < q, 1, np.where(ids < 2 * q, -1, 0))

    def generate(self, rng: np.random.Generator, n: int) -> Dict[str, np.ndarray]:
        T = self.max_len
        ids = np.zeros((T, n), np.int64)
        lengths = np.zeros(n, np.int64)
        todo = np.arange(n)
        while todo.size:  # draw again the rows that came out as ties
            lengths[todo] = rng.integers(self.min_len, T + 1, size=todo.size)
            ids[:, todo] = rng.integers(0, self.vocab_size, size=(T, todo.size))
            pad = np.arange(T)[:, None] >= lengths  # (T, n)
            ids[pad] = 0
            score = np.where(pad, 0, self.word_sentiment(ids)).sum(axis=0)
            todo = np.flatnonzero(score == 0)
        cols = np.arange(n)
        mask = np.zeros((T, n), np.float32)
        mask[lengths - 1, cols] = 1.0
        target = np.zeros((T, n), np.int64)
        target[lengths - 1, cols] = score > 0
        return dict(x=ids, target=target, mask=mask, lengths=lengths)

    def keys(self, batch: Dict[str, np.ndarray]) -> List[bytes]:
        ids, lengths = batch["x"], batch["lengths"]
        return [ids[: lengths[b], b].tobytes() for b in range(ids.shape[1])]

    def loss(self, out: np.ndarray, batch: Dict[str, np.ndarray]) -> Tuple[float, np.ndarray]:
        return softmax_cross_entropy(out, batch["target"], batch["mask"], reduction="mean")

    def evaluate(self, model: RNN, final: bool = False) -> Dict[str, float]:
        out = self._heldout_outputs(model)
        loss, _ = self.loss(out, self.heldout)
        last = self.heldout["lengths"] - 1
        cols = np.arange(out.shape[1])
        pred = out[last, cols].argmax(axis=-1)
        right = float(np.mean(pred == self.heldout["target"][last, cols]))
        return self._mean_over_ranks({"loss": loss, "metric": right}, out.shape[1])

    def format_metric(self, value: float) -> str:
        return f"held-out accuracy: {100 * value:.2f}% ({self.heldout_size} sequences, chance 50%)"


# ------------------------------------------------------------------------------ charlm
def stdlib_corpus(heldout_every: int = 10) -> Tuple[str, str, str]:
    """``(train, heldout, description)`` from the standard library's top-level ``.py`` files,
    in name order; every ``heldout_every``-th file is held out."""
    root = os.path.dirname(os.__file__)
    files = sorted(glob.glob(os.path.join(root, "*.py")))
    if len(files) < heldout_every:
        raise FileNotFoundError(
            f"charlm: found {len(files)} .py files in {root}, too few for the default corpus; pass a text file (--data)"
        )
    train: List[str] = []
    held: List[str] = []
    for i, f in enumerate(files):
        with open(f, encoding="utf-8", errors="replace") as fh:
            (held if i % heldout_every == heldout_every - 1 else train).append(fh.read())
    return "".join(train), "".join(held), f"{len(files)} .py files of the standard library in {root}"


def file_corpus(path: str, heldout_fraction: float = 0.1) -> Tuple[str, str, str]:
    """``(train, heldout, description)``: the last ``heldout_fraction`` of a UTF-8 text file
    is held out."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"data: expected a path to a text file, got {path!r}")
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError as e:
        raise ValueError(f"data: cannot read {str(path)!r}: {e.strerror or e}") from e
    cut = int(round(len(text) * (1.0 - heldout_fraction)))
    return text[:cut], text[cut:], f"{path} ({len(text)} characters)"


def _nll_sum(logits: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> float:
    """Summed -log softmax(logits)[target] over the masked-in steps (no gradient: cheaper
    than ``losses.softmax_cross_entropy`` on long held-out texts)."""
    z = logits.astype(np.float64)
    zmax = z.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(z - zmax).sum(axis=-1)) + zmax[..., 0]
    picked = np.take_along_axis(z, targets[..., None], axis=-1)[..., 0]
    return float(np.sum((lse - picked)[mask]))


class CharLM(Task):
    """Character language model trained with truncated backpropagation through time.

    The training text is cut into ``batch_size`` contiguous streams read ``bptt`` characters
    at a time; the hidden state is carried from one chunk to the next (its gradient is cut
    at the chunk boundary), and reset at each pass over the text, which starts at a random
    offset in [0, bptt). The loss is the mean cross-entropy in nats; the metric is held-out
    bits per character (= nats / ln 2). ``unigram_bits`` is the held-out bits per
    character of predicting every character from its training frequency.
    """

    name = "charlm"
    metric = "bits/char"
    loss_name = "cross-entropy (nats/char)"
    # Chosen with bench/bench_charlm.py on a quiet 2-core machine (docs/training.md): 2.6
    # minutes of training keep the whole command (loading, training, final evaluation)
    # within 3 minutes.
    defaults = dict(hidden=768, layers=1, optimizer="adam", lr=1e-3, clip=1.0, steps=None, minutes=2.6,
                    eval_every=None, validations=10, schedule="cosine", batch=32, bptt=64, embedding=64)
    VAL_CHARS = 16384  # periodic validation reads this much held-out text (one chunk); the final one all
    row_state = ("h",)  # state entries with one row per stream (axis -2): rnnext.distributed gathers them

    def __init__(
        self,
        data: Optional[str] = None,
        *,
        batch_size: int = 64,
        bptt: int = 32,
        embedding_size: int = 64,
        heldout_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        if data is not None and not isinstance(data, (str, os.PathLike)):
            raise TypeError(f"data: expected a path to a text file or None, got {data!r}")
        self.data = None if data is None else os.fspath(data)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.bptt = check_int("bptt", bptt, 1)
        self.embedding_size = check_int("embedding_size", embedding_size, 1)
        self.heldout_fraction = check_float("heldout_fraction", heldout_fraction, 0.0, 0.5)
        self.seed = check_int("seed", seed, 0)
        if self.data is None:
            train, held, self.source = stdlib_corpus()
        else:
            train, held, self.source = file_corpus(self.data, self.heldout_fraction)
        self.vocab = "".join(sorted(set(train) | {UNKNOWN}))
        self.train_ids = encode(train, self.vocab)
        self.heldout_ids = encode(held, self.vocab)
        self.stream_len = (len(self.train_ids) - 1) // self.batch_size
        if self.stream_len < 2 * self.bptt:
            raise ValueError(
                f"data: the training part has {len(self.train_ids)} characters; batch_size * 2 * bptt + 1 = "
                f"{self.batch_size * 2 * self.bptt + 1} at least are needed"
            )
        if len(self.heldout_ids) < 2:
            raise ValueError(f"data: the held-out part has {len(self.heldout_ids)} characters; at least 2 are needed")
        self.sha256 = hashlib.sha256((train + "\0" + held).encode("utf-8", "surrogatepass")).hexdigest()
        counts = np.bincount(self.train_ids, minlength=len(self.vocab)) + 1.0  # add-one smoothing
        self.unigram_bits = float(-np.mean(np.log2(counts / counts.sum())[self.heldout_ids]))
        self.rng = np.random.default_rng(self.seed)
        self.streams = np.arange(self.batch_size)  # the streams this process reads (all but when sharded)
        self.pass_index, self.chunk = 0, 0
        self.h: Optional[np.ndarray] = None  # the state carried from chunk to chunk
        self._new_pass()

    def config(self) -> Dict[str, Any]:
        return dict(data=self.data, batch_size=self.batch_size, bptt=self.bptt,
                    embedding_size=self.embedding_size, heldout_fraction=self.heldout_fraction, seed=self.seed)

    def meta(self) -> Dict[str, Any]:
        return dict(vocab=self.vocab, sha256=self.sha256, unigram_bits=self.unigram_bits)

    def build_model(self, hidden_size: int, num_layers: int = 1, seed: Optional[int] = None) -> RNN:
        V = len(self.vocab)
        return RNN(self.embedding_size, hidden_size, V, vocab_size=V, num_layers=num_layers, seed=seed)

    def _new_pass(self) -> None:
        self.offset = int(self.rng.integers(0, self.bptt))
        self.chunks = (self.stream_len - 1 - self.offset) // self.bptt
        self.chunk, self.h = 0, None

    def next_batch(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(x, targets)``, both (bptt, batch_size) ids: the next chunk of every stream."""
        if self.chunk >= self.chunks:
            self.pass_index += 1
            self._new_pass()
        start = self.offset + self.chunk * self.bptt
        pos = self.streams[None, :] * self.stream_len + start + np.arange(self.bptt)[:, None]
        self.chunk += 1
        return self.train_ids[pos], self.train_ids[pos + 1]

    def train_step(self, model: RNN) -> float:
        x, y = self.next_batch()
        logits, self.h = model(x, self.h)
        loss, grad = softmax_cross_entropy(logits, y, reduction="mean")
        model.backward(grad, wrt="logits")  # no dh_n: the gradient stops at the chunk boundary
        return loss

    def heldout_chunks(self, ids: np.ndarray, streams: int = 64, length: int = 256) -> Iterator[Tuple[np.ndarray, ...]]:
        """(x, targets, mask) chunks covering every next-character prediction in ``ids``."""
        n = len(ids) - 1
        streams = max(1, min(streams, n))
        per = -(-n // streams)
        padded = np.zeros(streams * per + 1, np.int64)
        padded[: n + 1] = ids
        valid = np.zeros(streams * per, bool)
        valid[:n] = True
        pos = np.arange(streams)[None, :] * per
        for start in range(0, per, length):
            p = pos + np.arange(start, min(start + length, per))[:, None]
            yield padded[p], padded[p + 1], valid[p]

    def shard(self, rank: int, size: int, allreduce: Callable[[np.ndarray], np.ndarray]) -> int:
        rows = super().shard(rank, size, allreduce)
        self.streams = self.streams[rank::size]
        if self.h is not None:
            self.h = self.h[..., rank::size, :]
        return rows

    def evaluate(self, model: RNN, final: bool = False) -> Dict[str, float]:
        ids = self.heldout_ids if final else self.heldout_ids[: self.VAL_CHARS + 1]
        cols = slice(None) if self._shard is None else slice(self._shard[0], None, self._shard[1])
        was_training = model.training
        model.eval()
        total, count, h = 0.0, 0.0, None
        try:
            for x, y, m in self.heldout_chunks(ids):
                if cols != slice(None):
                    x, y, m = x[:, cols], y[:, cols], m[:, cols]
                if x.shape[1]:
                    logits, h = model(x, h)
                    total += _nll_sum(logits, y, m)
                count += float(m.sum())
        finally:
            model.train(was_training)
        total, count = self._over_ranks([total, count])
        nats = total / count
        return {"loss": nats, "metric": nats / LN2}

    def format_metric(self, value: float) -> str:
        return (f"held-out bits/char: {value:.3f} ({len(self.heldout_ids)} characters; "
                f"unigram baseline {self.unigram_bits:.3f})")

    def state_dict(self) -> Dict[str, Any]:
        """Sharded, ``h`` holds this rank's streams only (see ``row_state``)."""
        state: Dict[str, Any] = dict(rng=_rng_state(self.rng), pass_index=self.pass_index, offset=self.offset,
                                     chunk=self.chunk)
        if self.h is not None:
            state["h"] = np.array(self.h)
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        want = {"rng", "pass_index", "offset", "chunk"}
        if not isinstance(state, dict) or not want <= set(state) <= want | {"h"}:
            raise ValueError(f"state: expected the keys {sorted(want)} (and 'h'), got {state!r:.200}")
        for key in ("pass_index", "offset", "chunk"):
            if isinstance(state[key], bool) or not isinstance(state[key], (int, np.integer)) or state[key] < 0:
                raise ValueError(f"state: {key} should be an int >= 0, got {state[key]!r}")
        if state["offset"] >= self.bptt:
            raise ValueError(f"state: offset should be below bptt = {self.bptt}, got {state['offset']}")
        chunks = (self.stream_len - 1 - state["offset"]) // self.bptt
        if state["chunk"] > chunks:
            raise ValueError(f"state: chunk should be at most {chunks}, got {state['chunk']}")
        h = state.get("h")
        if h is not None:
            h = np.array(h)
            if h.ndim not in (2, 3) or h.shape[-2] != self.batch_size:
                raise ValueError(f"state: h should have batch_size = {self.batch_size} rows, got shape {h.shape}")
        _set_rng_state(self.rng, state["rng"])
        self.pass_index, self.offset, self.chunk = int(state["pass_index"]), int(state["offset"]), int(state["chunk"])
        self.chunks, self.h = chunks, None if h is None else h[..., self.streams, :]


TASKS = {cls.name: cls for cls in (CharLM, Reverse, Adding, Sentiment)}


def get_task(name: str, **kwargs: Any) -> Task:
    """A built-in task by name: "charlm", "reverse", "adding" or "classify"."""
    if not isinstance(name, str) or name not in TASKS:
        raise ValueError(f"task: expected one of {', '.join(repr(n) for n in TASKS)}, got {name!r}")
    return TASKS[name](**kwargs)
