"""One-to-one (001): a single step in, a single output out; the RNN is then a feed-forward net.

Learns XOR of two bits, which needs the hidden layer. The bits arrive with noise, so every
input is new: the score is on fresh noisy inputs the model was not trained on.
"""

import numpy as np

import rnnext
from rnnext.losses import softmax_cross_entropy

CORNERS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
XOR = np.array([0, 1, 1, 0])


def batch(rng: np.random.Generator, B: int) -> tuple:
    """(T=1, B, 2) noisy corners (standard deviation 0.15) and their (T=1, B) XOR labels."""
    k = rng.integers(0, 4, B)
    x = CORNERS[k] + rng.normal(0.0, 0.15, (B, 2)).astype(np.float32)
    return x[None], XOR[k][None]


def main(steps: int = 500, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    rnn = rnnext.RNN(2, 8, 2, seed=seed)
    opt = rnnext.optim.SGD(rnn, lr=0.5)
    for _ in range(steps):
        x, labels = batch(rng, 32)
        logits, _ = rnn(x)
        loss, dlogits = softmax_cross_entropy(logits, labels, reduction="mean")
        opt.zero_grad()
        rnn.backward(dlogits)
        opt.step()
    x, labels = batch(rng, 1000)  # held out: fresh draws
    accuracy = float(np.mean(rnn(x)[0].argmax(-1) == labels))
    print(f"one-to-one XOR: loss {loss:.4f}, held-out accuracy {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    main()
