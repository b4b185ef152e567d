"""Runs under ``mpiexec -n N`` or alone, for tests/test_distributed.py.

``python distributed_run.py CASE OUT [dtype]`` trains 20 steps and writes the parameters
(rank 0) to OUT.npy. Alone it trains on the whole global batch; under mpiexec each rank
trains on rows rank::N and the ranks' gradients are reduced by rnnext.distributed.
"""

import os
import signal
import sys

import numpy as np

import rnnext
from rnnext import optim, tasks
from rnnext.distributed import from_environment
from rnnext.losses import mse, softmax_cross_entropy
from rnnext.training import Trainer

STEPS, GLOBAL_BATCH, CLIP = 20, 8, 0.2


def manual(case, dist, dtype):
    """The loop of docs/distributed.md by hand, with masked losses: the ranks' loss
    weights (masked-in steps) differ from step to step."""
    if case == "tokens":  # a token model with lengths, a loss at every valid step
        model = rnnext.RNN(6, 16, 5, vocab_size=11, dtype=dtype, seed=3)
    else:  # stacked and bidirectional, real inputs, randomly masked steps
        model = rnnext.RNN(3, 12, 2, num_layers=2, bidirectional=True, dtype=dtype, seed=3)
    opt = optim.Adam(model, lr=0.01)
    rows = slice(None) if dist is None else slice(dist.rank, None, dist.size)
    if dist is not None:
        dist.synchronize_model(model, opt)
    clipped = 0
    for step in range(STEPS):
        rng = np.random.default_rng(step)  # the global batch, the same on every rank
        T = 7
        lengths = rng.integers(1, T + 1, size=GLOBAL_BATCH)
        valid = (np.arange(T)[:, None] < lengths).astype(np.float64)
        if case == "tokens":
            x = rng.integers(0, 11, size=(T, GLOBAL_BATCH))
            target = rng.integers(0, 5, size=(T, GLOBAL_BATCH))
            mask = valid
        else:
            x = rng.standard_normal((T, GLOBAL_BATCH, 3)).astype(dtype)
            target = rng.standard_normal((T, GLOBAL_BATCH, 2)).astype(dtype)
            mask = valid * (rng.random((T, GLOBAL_BATCH)) < 0.7)
            mask[0] = 1.0  # at least one step per sequence
        x, target, mask, lengths = x[:, rows], target[:, rows], mask[:, rows], lengths[rows]
        opt.zero_grad()
        out, _ = model(x, lengths=lengths)
        if case == "tokens":
            loss, grad = softmax_cross_entropy(out, target, mask, reduction="mean")
        else:
            loss, grad = mse(out, target, mask, reduction="mean")
        model.backward(grad, wrt="logits")
        if dist is not None:
            loss = dist.reduce_gradients(model, loss, float(mask.sum()))
        clipped += optim.clip_grad_norm(model, CLIP) > CLIP
        opt.step()
    return model, clipped


def trainer(case, dist):
    """The Trainer on a built-in task: classify (tokens, lengths) or charlm (streams with
    a carried hidden state)."""
    if case == "classify":
        task = tasks.Sentiment(batch_size=2 * GLOBAL_BATCH, heldout_size=100, seed=5)
    else:
        # An odd global batch: the ranks read 4 and 3 streams.
        task = tasks.CharLM(os.__file__, batch_size=GLOBAL_BATCH - 1, bptt=16, embedding_size=8, seed=5)
    model = task.build_model(24, 2, seed=4)
    opt = optim.Adam(model, lr=0.01)
    tr = Trainer(task, model, opt, clip=CLIP, eval_every=7, dist=dist)
    final = tr.fit(STEPS, progress=False, log=lambda line: None)
    return model, final, tr.history


def failing(case, dist):
    """Rank 1 fails at its 5th step, with an exception or SIGKILL, while rank 0 goes on."""
    task = tasks.Reverse(4, 3, batch_size=8, heldout_size=20)
    model = task.build_model(16)
    step = task.train_step

    def train_step(m):
        if dist.rank == 1 and len(tr.history["train_loss"]) == 5:
            if case == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("rank 1 breaks down at step 6")
        return step(m)

    task.train_step = train_step
    tr = Trainer(task, model, optim.Adam(model), dist=dist)
    tr.fit(10**6, progress=False)


def mismatch(dist):
    """Rank 1 builds a wider model: every rank must refuse to start."""
    model = rnnext.RNN(3, 8 + dist.rank, 2)
    try:
        dist.synchronize_model(model, optim.Adam(model))
    except ValueError as e:
        print(f"rank {dist.rank} refused: {e}", flush=True)
        dist.comm.Barrier()
        sys.exit(3)


def main():
    case, out = sys.argv[1], sys.argv[2]
    dtype = sys.argv[3] if len(sys.argv) > 3 else "float64"
    dist = from_environment(check_every=5)
    if case in ("raise", "kill"):
        return failing(case, dist)
    if case == "mismatch":
        return mismatch(dist)
    if case in ("tokens", "bidirectional"):
        model, clipped = manual(case, dist, dtype)
        extra = {"clipped": clipped}
    else:
        model, final, history = trainer(case, dist)
        extra = {"final": [final["loss"], final["metric"]], "train_loss": history["train_loss"],
                 "val_loss": history["val_loss"]}
    if dist is not None:  # every rank ends with the same parameters, bit for bit
        every = dist.comm.allgather(model.flat_params.tobytes())
        assert all(b == every[0] for b in every), "the ranks' parameters differ"
    if dist is None or dist.rank == 0:
        np.savez(out, params=model.flat_params, **{k: np.asarray(v, np.float64) for k, v in extra.items()})


main()
