"""One-to-many (001): one input, then zero inputs while the model writes a sequence.

Given a number k in 0..7 (one-hot with noise, first step only), write its 3 bits, most
significant first. Every input is new: the score is on fresh noisy inputs.
"""

import numpy as np

import rnnext
from rnnext.losses import sigmoid_cross_entropy

T, K = 3, 8


def batch(rng: np.random.Generator, B: int) -> tuple:
    """(T, B, K) inputs: step 0 carries one-hot k plus noise, later steps are zeros; and the
    (T, B, 1) target bits of k."""
    k = rng.integers(0, K, B)
    x = np.zeros((T, B, K), dtype=np.float32)
    x[0] = np.eye(K)[k] + rng.normal(0.0, 0.1, (B, K))
    bits = (k[None, :] >> np.array([2, 1, 0])[:, None]) & 1  # (T, B)
    return x, bits[..., None].astype(np.float32)


def main(steps: int = 800, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    rnn = rnnext.RNN(K, 16, 1, seed=seed)  # no output activation: y holds the logits
    opt = rnnext.optim.SGD(rnn, lr=1.0)
    for _ in range(steps):
        x, bits = batch(rng, 32)
        logits, _ = rnn(x)
        loss, dlogits = sigmoid_cross_entropy(logits, bits, reduction="mean")
        opt.zero_grad()
        rnn.backward(dlogits)
        opt.step()
    x, bits = batch(rng, 1000)  # held out: fresh draws
    written = rnn(x)[0] > 0  # sigmoid(z) > 0.5
    accuracy = float(np.mean(np.all(written == bits.astype(bool), axis=(0, 2))))
    print(f"one-to-many binary writer: loss {loss:.4f}, held-out sequence accuracy {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    main()
