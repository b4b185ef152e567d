"""Many-to-many with T_x = T_y (001): an output at every input step.

Tags each step of a random symbol stream with the symbol seen two steps earlier (an echo),
which the model can only do by remembering. The score is on fresh streams, none of them
seen in training.
"""

import numpy as np

import rnnext
from rnnext.losses import softmax_cross_entropy


def main(steps: int = 600, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    V, T, B, delay = 4, 12, 32, 2
    rnn = rnnext.RNN(8, 32, V, vocab_size=V, seed=seed)  # token ids through an embedding
    opt = rnnext.optim.SGD(rnn, lr=0.2)
    mask = (np.arange(T) >= delay)[:, None] * np.ones((1, B), np.float32)
    seen: set = set()  # the training streams, as bytes
    for _ in range(steps):
        ids = rng.integers(0, V, (T, B))
        seen.update(column.tobytes() for column in ids.T)
        targets = np.roll(ids, delay, axis=0)
        logits, _ = rnn(ids)
        loss, dlogits = softmax_cross_entropy(logits, targets, mask=mask, reduction="mean")
        opt.zero_grad()
        rnn.backward(dlogits)
        rnnext.optim.clip_grad_norm(rnn, 5.0)
        opt.step()
    ids = rng.integers(0, V, (T, 250))
    ids = ids[:, [column.tobytes() not in seen for column in ids.T]][:, :200]  # held out
    pred = rnn(ids)[0].argmax(-1)
    accuracy = float(np.mean(pred[delay:] == ids[:-delay]))
    print(f"many-to-many echo (T_x = T_y): loss {loss:.4f}, held-out step accuracy {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    main()
