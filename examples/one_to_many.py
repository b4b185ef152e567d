"""One-to-many (001): one input, then zero inputs while the model writes a sequence.

Given a number k in 0..7 (one-hot, first step only), write its 3 bits, most significant first.
"""

import numpy as np

import rnnext
from rnnext.losses import sigmoid_cross_entropy


def main(steps: int = 800, seed: int = 0) -> float:
    T, K = 3, 8
    x = np.zeros((T, K, K), dtype=np.float32)
    x[0] = np.eye(K)  # step 0 carries the number, later steps are zeros
    bits = (np.arange(K)[None, :] >> np.array([2, 1, 0])[:, None]) & 1  # (T, B=K)
    rnn = rnnext.RNN(K, 16, 1, seed=seed)  # no output activation: y holds the logits
    opt = rnnext.optim.SGD(rnn, lr=1.0)
    for _ in range(steps):
        logits, _ = rnn(x)
        loss, dlogits = sigmoid_cross_entropy(logits, bits[..., None].astype(np.float32), reduction="mean")
        opt.zero_grad()
        rnn.backward(dlogits)
        opt.step()
    written = (rnn(x)[0][..., 0] > 0).astype(int)  # sigmoid(z) > 0.5
    accuracy = float(np.mean(np.all(written == bits, axis=0)))
    print(f"one-to-many binary writer: loss {loss:.4f}, sequence accuracy {accuracy:.2f}")
    return accuracy


if __name__ == "__main__":
    main()
