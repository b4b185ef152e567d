"""Data-parallel training on one machine: 1 process x 2 threads against 2 processes (MPI
ranks) x 1 thread, on charlm with hidden 256, global batch 64, bptt 32 (the default
before hidden 512 and bptt 64 became it).

    python bench/bench_distributed.py [--steps 60] [--rounds 2]

Alternates the set-ups (and 1 process x 1 thread) ``--rounds`` times (the machine may be shared: compare them side
by side) and prints, per set-up, training steps per second; for 2 ranks also the time per
step spent in the gradient Allreduce (waiting for the other rank included), and the cost of
the Allreduce alone (both ranks entering together, after a barrier) against forward and
backward of one rank. Needs the mpi extra (pip install "rnnext[mpi]").
"""

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")


def worker(steps: int) -> None:
    from rnnext import optim, tasks
    from rnnext.distributed import from_environment
    from rnnext.training import Trainer

    dist = from_environment()
    task = tasks.CharLM(batch_size=64)  # the global batch
    model = task.build_model(256, seed=0)
    opt = optim.Adam(model, lr=3e-3)
    trainer = Trainer(task, model, opt, clip=5.0, dist=dist)
    if dist is not None:
        trainer._rows = dist.synchronize(trainer)
    t_fb = t_reduce = 0.0
    for i in range(steps + 5):
        if i == 5:
            t_fb = t_reduce = 0.0
            start = time.perf_counter()
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = task.train_step(model)
        t1 = time.perf_counter()
        if dist is not None:
            loss = dist.reduce_gradients(model, loss, trainer._rows)
        t2 = time.perf_counter()
        optim.clip_grad_norm(model, 5.0)
        opt.step()
        t_fb, t_reduce = t_fb + t1 - t0, t_reduce + t2 - t1
    seconds = time.perf_counter() - start
    result = {"steps_per_s": steps / seconds, "forward_backward_ms": 1e3 * t_fb / steps,
              "reduce_ms": 1e3 * t_reduce / steps, "params": model.num_parameters()}
    if dist is not None:  # the Allreduce alone: both ranks enter it together
        for name, buf in (("allreduce_alone_ms", model.flat_grads), ("scalars_alone_ms", np.zeros(2))):
            alone = []
            for _ in range(50):
                dist.comm.Barrier()
                t0 = time.perf_counter()
                dist.allreduce(buf)
                alone.append(time.perf_counter() - t0)
            result[name] = 1e3 * float(np.median(alone))
        result["threads"] = dist.threads
        result["forward_backward_ms_per_rank"] = dist.comm.gather(result["forward_backward_ms"], root=0)
        if dist.rank != 0:
            return
    print("RESULT " + json.dumps(result), flush=True)


def _mpiexec() -> str:
    """The mpich wheel's mpiexec, else the one on PATH."""
    try:
        files = importlib.metadata.distribution("mpich").files or []
        return next(str(f.locate()) for f in files if f.name == "mpiexec")
    except (importlib.metadata.PackageNotFoundError, StopIteration):
        return shutil.which("mpiexec") or "mpiexec"


def launch(ranks: int, steps: int, threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    env["RNNEXT_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, __file__, "--worker", "--steps", str(steps)]
    if ranks > 1:
        cmd = [_mpiexec(), "-n", str(ranks)] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200, check=True).stdout
    return json.loads(out.split("RESULT ", 1)[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.steps)
    for r in range(args.rounds):
        one, two, single = launch(1, args.steps, 2), launch(2, args.steps, 1), launch(1, args.steps, 1)
        print(f"round {r + 1}: 1 process x 2 threads {one['steps_per_s']:.2f} steps/s "
              f"(forward+backward {one['forward_backward_ms']:.1f} ms); 1 process x 1 thread "
              f"{single['steps_per_s']:.2f} steps/s (forward+backward {single['forward_backward_ms']:.1f} ms); "
              "2 ranks x 1 thread "
              f"{two['steps_per_s']:.2f} steps/s (forward+backward "
              f"{' and '.join(f'{t:.1f}' for t in two['forward_backward_ms_per_rank'])} ms on ranks 0 and 1, "
              f"gradient reduction {two['reduce_ms']:.2f} ms incl. waiting, Allreduce alone "
              f"{two['allreduce_alone_ms']:.3f} ms for {two['params']} float32, "
              f"{two['scalars_alone_ms']:.3f} ms for the 2 scalars); "
              f"ratio 2 ranks / 1 process {two['steps_per_s'] / one['steps_per_s']:.3f}", flush=True)


if __name__ == "__main__":
    main()
