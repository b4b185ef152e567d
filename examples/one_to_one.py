"""One-to-one (001): a single step in, a single output out; the RNN is then a feed-forward net.

Learns XOR of two bits, which needs the hidden layer.
"""

import numpy as np

import rnnext
from rnnext.losses import softmax_cross_entropy


def main(steps: int = 500, seed: int = 0) -> float:
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)[None]  # (T=1, B=4, 2)
    labels = np.array([[0, 1, 1, 0]])  # (T=1, B=4)
    rnn = rnnext.RNN(2, 8, 2, seed=seed)
    opt = rnnext.optim.SGD(rnn, lr=0.5)
    for _ in range(steps):
        logits, _ = rnn(x)
        loss, dlogits = softmax_cross_entropy(logits, labels, reduction="mean")
        opt.zero_grad()
        rnn.backward(dlogits)
        opt.step()
    accuracy = float(np.mean(rnn(x)[0].argmax(-1) == labels))
    print(f"one-to-one XOR: loss {loss:.4f}, accuracy {accuracy:.2f}")
    return accuracy


if __name__ == "__main__":
    main()
