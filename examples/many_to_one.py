"""Many-to-one (001, 004): read a whole sequence, classify it at its last step.

Bit sequences of different lengths (padded, with `lengths`): are there more ones than zeros?
`rnnext.gather_last` picks each sequence's output at its last step (by `lengths`) and
`rnnext.scatter_last` puts the loss gradient back at those steps. About one sequence in
five (chosen by a hash of its bits and length) is never trained on; the score is on those.
"""

import numpy as np

import rnnext
from rnnext.losses import softmax_cross_entropy


def held_out(bits: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(B,) True for the sequences kept out of training: a hash of bits and length."""
    code = (bits << np.arange(bits.shape[0])[:, None]).sum(0)
    return (code * 2654435761 + lengths * 40503) % 5 == 0


def batch(rng: np.random.Generator, B: int, T: int, heldout: bool = False) -> tuple:
    """B sequences of the training set, or of the held-out set."""
    lengths = np.zeros(B, dtype=np.int64)
    bits = np.zeros((T, B), dtype=np.int64)
    todo = np.arange(B)
    steps = np.arange(T)[:, None]
    while todo.size:  # draw until every row is on the wanted side
        n = rng.integers(1, T + 1, todo.size) | 1  # odd lengths: never a tie
        lengths[todo] = np.minimum(n, T - (T % 2 == 0))
        bits[:, todo] = np.where(steps < lengths[todo], rng.integers(0, 2, (T, todo.size)), 0)
        todo = todo[held_out(bits[:, todo], lengths[todo]) != heldout]
    labels = (2 * bits.sum(0) > lengths).astype(int)
    x = np.eye(2, dtype=np.float32)[bits]  # (T, B, 2) one-hot bits
    return x, lengths, labels


def main(steps: int = 600, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    rnn = rnnext.RNN(2, 16, 2, seed=seed)
    opt = rnnext.optim.SGD(rnn, lr=0.3)
    for _ in range(steps):
        x, lengths, labels = batch(rng, 32, 11)
        logits, _ = rnn(x, lengths=lengths)
        last = rnnext.gather_last(logits, lengths)  # (B, 2): each sequence's last step
        loss, dlast = softmax_cross_entropy(last, labels, reduction="mean")
        opt.zero_grad()
        rnn.backward(rnnext.scatter_last(dlast, lengths, logits))
        rnnext.optim.clip_grad_norm(rnn, 5.0)
        opt.step()
    x, lengths, labels = batch(rng, 500, 11, heldout=True)
    logits, _ = rnn(x, lengths=lengths)
    accuracy = float(np.mean(rnnext.gather_last(logits, lengths).argmax(-1) == labels))
    print(f"many-to-one majority vote: loss {loss:.4f}, held-out accuracy {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    main()
