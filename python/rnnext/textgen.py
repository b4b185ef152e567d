"""Text from a character model: sampling (``sample_text``) and autocompletion (``complete``).

A character model is an ``RNN`` with a vocabulary (``vocab_size = output_size = len(vocab)``)
whose ids are the positions of the characters in ``vocab``, as ``rnnext train`` builds
(task ``charlm``). ``CharModel`` keeps the two together; ``load`` reads one from a training
checkpoint or from a model file saved with ``CharModel.save``::

    lm = rnnext.textgen.load("lm.ckpt")            # or a model file: lm.save("lm.npz")
    print(lm.sample("def ", length=200))          # or lm.complete("import o")

Characters outside the vocabulary (in a prime or a prefix) are read as ``UNKNOWN``
(U+FFFD), with a warning, when the vocabulary has it (``rnnext train``'s always does).
"""

from __future__ import annotations

import heapq
import os
import warnings
from typing import Any, List, Optional, Tuple

import numpy as np

from ._checks import check_float, check_int
from .losses import _log_softmax
from .rnn import RNN

UNKNOWN = "\ufffd"  # stands for characters never seen in training
DEFAULT_TEMPERATURE = 0.8  # also the command line's (rnnext sample)
# beam=None: exact search (no width limit) while the model has at most this many strings
# to consider, else this many live strings per step.
EXACT_LIMIT = 4096
DEFAULT_BEAM = 32


def encode(text: str, vocab: str) -> np.ndarray:
    """Character ids (int64) of ``text`` in ``vocab`` (sorted); characters outside it map to
    the id of ``UNKNOWN``, which the vocabulary then must hold. Fast on long texts."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    table = np.frombuffer(vocab.encode("utf-32-le"), dtype=np.uint32)
    ids = np.searchsorted(table, codes)
    ids = np.minimum(ids, len(table) - 1)
    unknown = table[ids] != codes
    if unknown.any():
        if UNKNOWN not in vocab:
            bad = text[int(np.argmax(unknown))]
            raise ValueError(f"text: the character {bad!r} is not in the vocabulary")
        ids[unknown] = vocab.index(UNKNOWN)
    return ids.astype(np.int64)


def check_char_model(model: Any, vocab: Any) -> None:
    """TypeError/ValueError unless ``model`` is a unidirectional RNN reading and writing the
    ``len(vocab)`` distinct characters of ``vocab``."""
    if not isinstance(model, RNN):
        raise TypeError(f"model: expected an rnnext.RNN, got {type(model).__name__}")
    if not isinstance(vocab, str):
        raise TypeError(f"vocab: expected a str of distinct characters, got {type(vocab).__name__}")
    if not vocab:
        raise ValueError("vocab: expected a non-empty str of distinct characters, got ''")
    if len(set(vocab)) != len(vocab):
        dup = next(c for i, c in enumerate(vocab) if c in vocab[:i])
        raise ValueError(f"vocab: expected distinct characters, got {dup!r} twice")
    if model.vocab_size != len(vocab) or model.output_size != len(vocab):
        raise ValueError(
            f"vocab: the model reads {model.vocab_size} and writes {model.output_size} symbols, "
            f"but the vocabulary has {len(vocab)}"
        )
    if model.bidirectional:
        raise ValueError("model: a bidirectional model cannot generate text one character at a time")


def _ids(name: str, text: Any, vocab: str) -> np.ndarray:
    """Ids of a prime or prefix; characters outside the vocabulary become UNKNOWN (warned)."""
    if not isinstance(text, str):
        raise TypeError(f"{name}: expected a str, got {type(text).__name__}")
    index = {c: i for i, c in enumerate(vocab)}
    missing = sorted(set(text) - set(index))
    if missing:
        shown = "".join(missing)
        if UNKNOWN not in index:
            raise ValueError(f"{name}: the characters {shown!r} are not in the model's vocabulary (which has no "
                             f"unknown symbol U+FFFD to read them as)")
        warnings.warn(f"{name}: the characters {shown!r} are not in the model's vocabulary; read as the unknown "
                      "symbol U+FFFD", stacklevel=3)
    unk = index.get(UNKNOWN, -1)
    return np.array([index.get(c, unk) for c in text], dtype=np.int64)


def _start(model: RNN, vocab: str, ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Read ``ids`` (without any, a newline: a natural start of a line); return the
    log-probabilities of the next character (V,) and the state (1, S, H) or (1, H)."""
    if ids.size == 0:
        ids = np.array([vocab.index("\n") if "\n" in vocab else 0])
    batch_first = bool(getattr(model, "batch_first", False))
    was_training = model.training
    model.eval()
    try:
        logits, h = model(ids[None, :] if batch_first else ids[:, None])
    finally:
        model.train(was_training)
    last = logits[0, -1] if batch_first else logits[-1, 0]
    return _log_softmax(last.astype(np.float64)), h


def sample_text(
    model: RNN,
    vocab: str,
    prime: str = "",
    length: int = 500,
    temperature: float = DEFAULT_TEMPERATURE,
    seed: Optional[int] = None,
) -> str:
    """Generate ``length`` characters from a character model, after reading ``prime``
    (not repeated in the result; without a prime the model starts after a newline).

    Each next character is drawn from softmax(logits / temperature): below 1 safer, above 1
    wilder; ``temperature=0`` always takes the likeliest character (greedy). The default,
    0.8, is the command line's. ``seed`` seeds the draws.
    """
    check_char_model(model, vocab)
    ids = _ids("prime", prime, vocab)
    length = check_int("length", length, 0)
    temperature = check_float("temperature", temperature, 0.0, float("inf"))
    rng = np.random.default_rng(seed)
    logp, h = _start(model, vocab, ids)
    out: List[str] = []
    for n in range(length):
        if temperature == 0:
            i = int(np.argmax(logp))
        else:
            z = logp / temperature
            p = np.exp(z - z.max())
            i = int(rng.choice(len(vocab), p=p / p.sum()))
        out.append(vocab[i])
        if n + 1 < length:
            y, h = model.step(np.array([i]), h)
            logp = _log_softmax(y[0].astype(np.float64))
    return "".join(out)


def complete(
    model: RNN,
    vocab: str,
    prefix: str,
    k: int = 5,
    max_length: int = 20,
    stop: str = " \n\t",
    beam: Optional[int] = None,
) -> List[Tuple[str, float]]:
    """The ``k`` most probable completions of ``prefix``, as ``(text, probability)`` pairs,
    most probable first.

    A completion ends with its first character in ``stop`` (which it includes) or after
    ``max_length`` characters; its probability is the product of the model's
    next-character probabilities (so the probabilities of all completions sum to 1).
    Characters of ``stop`` outside the vocabulary are ignored.

    Beam search over ``RNN.step``, one batched step per character for all live strings.
    A live string is dropped as soon as it is less probable than the k-th best completion
    found (its extensions can only be less probable still), so with no width limit the
    search is exact. ``beam`` caps the live strings kept per character (the most probable).
    ``beam=None`` puts no cap when the model has at most 4096 strings to consider
    (``len(vocab) ** max_length``; exact) and keeps 32 live strings otherwise.
    """
    check_char_model(model, vocab)
    ids = _ids("prefix", prefix, vocab)
    k = check_int("k", k, 1)
    max_length = check_int("max_length", max_length, 1)
    if not isinstance(stop, str):
        raise TypeError(f"stop: expected a str of stop characters, got {type(stop).__name__}")
    V = len(vocab)
    if beam is None:
        width = None if max_length * np.log(V) <= np.log(EXACT_LIMIT) else max(DEFAULT_BEAM, k)
    else:
        width = check_int("beam", beam, 1)
    is_stop = np.array([c in stop for c in vocab])
    logp, h = _start(model, vocab, ids)
    live_text = [""]
    live_logp = np.zeros(1)
    step_logp = logp[None, :]  # (live, V): log p of each next character
    best: List[Tuple[float, str]] = []  # a min-heap of the k best completions found

    def floor() -> float:
        return best[0][0] if len(best) == k else -np.inf

    for depth in range(1, max_length + 1):
        cand = live_logp[:, None] + step_logp  # (live, V)
        ends = np.ones(V, bool) if depth == max_length else is_stop
        rows, cols = np.nonzero((cand > floor()) & ends[None, :])
        for r, c in zip(rows, cols):
            score = float(cand[r, c])
            if score > floor():
                item = (score, live_text[r] + vocab[c])
                heapq.heappush(best, item) if len(best) < k else heapq.heappushpop(best, item)
        if depth == max_length:
            break
        cand[:, ends] = -np.inf
        flat = cand.ravel()
        keep = np.flatnonzero(flat > floor())
        if width is not None and keep.size > width:
            keep = keep[np.argpartition(flat[keep], -width)[-width:]]
        if keep.size == 0:
            break
        rows, cols = np.divmod(keep, V)
        live_text = [live_text[r] + vocab[c] for r, c in zip(rows, cols)]
        live_logp = flat[keep]
        state = h[:, rows] if h.ndim == 3 else h[rows]
        y, h = model.step(cols.astype(np.int64), state)
        step_logp = _log_softmax(y.astype(np.float64))
    return [(text, float(np.exp(score))) for score, text in sorted(best, reverse=True)]


class CharModel:
    """A character model and its vocabulary: ``sample``, ``complete``, ``save``."""

    def __init__(self, model: RNN, vocab: str) -> None:
        check_char_model(model, vocab)
        self.model, self.vocab = model, vocab

    def sample(self, prime: str = "", length: int = 500, temperature: float = DEFAULT_TEMPERATURE,
               seed: Optional[int] = None) -> str:
        """``sample_text(self.model, self.vocab, ...)``."""
        return sample_text(self.model, self.vocab, prime, length, temperature, seed)

    def complete(self, prefix: str, k: int = 5, max_length: int = 20, stop: str = " \n\t",
                 beam: Optional[int] = None) -> List[Tuple[str, float]]:
        """``complete(self.model, self.vocab, ...)``."""
        return complete(self.model, self.vocab, prefix, k, max_length, stop, beam)

    def save(self, path: Any) -> None:
        """A model file (``rnnext.load`` reads its network) that also holds the vocabulary."""
        from .serialization import save

        save(self.model, path, vocab=self.vocab)

    def __repr__(self) -> str:
        return f"CharModel({self.model!r}, vocab of {len(self.vocab)} characters)"


def load(path: Any) -> CharModel:
    """A ``CharModel`` from a ``rnnext train --task charlm --save`` checkpoint or from a
    model file written by ``CharModel.save``; ValueError naming the file for anything else."""
    from .checkpoint import FORMAT, load_checkpoint
    from .serialization import read_model_file

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {path!r}")
    from ._files import read_npz

    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such file: {os.fspath(path)!r}")
    try:
        is_checkpoint = FORMAT in str(read_npz(os.fspath(path)).get("meta", ""))
    except ValueError:
        is_checkpoint = False  # the readers below say what is wrong
    if is_checkpoint:
        ckpt = load_checkpoint(path)
        if ckpt.task is None or "vocab" not in ckpt.task.get("meta", {}):
            kind = f"a {ckpt.task['name']!r} task's" if ckpt.task else "a bare"
            raise ValueError(f"{os.fspath(path)!r}: not a character model: the checkpoint holds {kind} model, "
                             "with no vocabulary")
        return CharModel(ckpt.model, ckpt.task["meta"]["vocab"])
    model, vocab = read_model_file(RNN, path)
    if vocab is None:
        raise ValueError(f"{os.fspath(path)!r}: not a character model: the model file holds no vocabulary "
                         "(save one with rnnext.textgen.CharModel(model, vocab).save(path))")
    return CharModel(model, vocab)
