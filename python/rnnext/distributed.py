"""Data-parallel training over MPI processes: ``mpiexec -n N rnnext train``.

Every rank (process) holds the whole model. At the start rank 0's parameters, optimizer
state, task state and trainer state are broadcast, after a check that every rank built the
same configuration. Each step every rank draws its rows ``rank::N`` of the batch a single
process would draw, runs forward and backward, and one in-place ``Allreduce`` of
``flat_grads`` turns the per-rank gradients into the gradient of the global batch (each
rank's gradient weighted by its share of the loss: its number of rows, or of masked-in
steps). Clipping and the optimizer step then see the same gradient on every rank, so the
parameters stay identical; a checksum every ``check_every`` steps turns any drift into an
error. See docs/distributed.md.

Needs mpi4py (``pip install "rnnext[mpi]"``); nothing else in rnnext imports it, and
``from_environment()`` imports it only when an MPI launcher started the process.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from typing import Any, Dict, List, Optional

import numpy as np

from ._checks import check_int
from ._threads import get_num_threads, set_num_threads
from ._version import __version__

# Set by the launchers for every process they start: MPICH/Hydra and Intel MPI (PMI_*),
# Open MPI, and PMIx (Open MPI 5, srun --mpi=pmix).
LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")


def launched_by_mpi() -> bool:
    """Whether an MPI launcher (mpiexec, mpirun, srun) started this process."""
    return any(name in os.environ for name in LAUNCHER_VARIABLES)


def from_environment(**kwargs: Any) -> Optional["Distributed"]:
    """A ``Distributed`` over all processes when an MPI launcher started more than one,
    else None. mpi4py is imported only under a launcher."""
    if not launched_by_mpi():
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        found = [name for name in LAUNCHER_VARIABLES if name in os.environ]
        raise RuntimeError(f"an MPI launcher started this process ({', '.join(found)} set) but mpi4py is not "
                           "installed: pip install 'rnnext[mpi]'") from None
    if MPI.COMM_WORLD.Get_size() == 1:
        return None
    return Distributed(MPI.COMM_WORLD, **kwargs)


class Distributed:
    """The ranks of ``comm`` (default: all processes) training one model together.

    ``check_every``: compare a checksum of the parameters across ranks every that many
    steps (0: never). ``threads``: engine threads per rank; by default, unless
    ``RNNEXT_NUM_THREADS`` is set, the cores this process may use divided by the number of
    ranks on this machine. ``abort_on_error``: an uncaught exception on any rank prints its
    traceback and aborts every rank (MPI_Abort), as ``python -m mpi4py`` does, instead of
    leaving the others waiting forever in a collective.
    """

    def __init__(self, comm: Any = None, *, check_every: int = 100, threads: Optional[int] = None,
                 abort_on_error: bool = True) -> None:
        from mpi4py import MPI

        if comm is None:
            comm = MPI.COMM_WORLD
        if not isinstance(comm, MPI.Intracomm):
            raise TypeError(f"comm: expected an mpi4py intracommunicator, got {type(comm).__name__}")
        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.check_every = check_int("check_every", check_every, 0)
        if not isinstance(abort_on_error, bool):
            raise TypeError(f"abort_on_error: expected a bool, got {abort_on_error!r}")
        local = comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_size = local.Get_size()
        local.Free()
        if threads is not None:
            set_num_threads(check_int("threads", threads, 1))
        elif "RNNEXT_NUM_THREADS" not in os.environ:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            set_num_threads(max(1, cores // self.local_size))
        self.threads = get_num_threads()
        self._limit_blas_threads()
        self._scalars = np.zeros(2, np.float64)
        if abort_on_error:
            self._abort_on_uncaught_exception()

    def _limit_blas_threads(self) -> None:
        """NumPy's BLAS (used by the gradient norm, the losses) gets the engine's threads per
        rank too: its default, every core in every rank, lets the ranks' spinning BLAS threads
        fight over the cores (measured: clipping alone took 24 ms instead of 0.13)."""
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # the mpi extra brings it; without it, only slower
            return
        self._blas_limit = threadpool_limits(limits=self.threads, user_api="blas")

    def __repr__(self) -> str:
        return f"Distributed(rank {self.rank} of {self.size}, {self.threads} threads)"

    # ---------------------------------------------------------------------------- failure
    def _abort_on_uncaught_exception(self) -> None:
        previous = sys.excepthook

        def hook(kind: Any, value: Any, tb: Any) -> None:
            sys.stderr.write(f"rnnext: rank {self.rank} of {self.size} failed; aborting every rank\n")
            previous(kind, value, tb)
            self.abort(1)

        sys.excepthook = hook

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (MPI_Abort), after flushing this rank's output."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)

    # ------------------------------------------------------------------------- the start
    def check_same(self, what: str, config: Dict[str, Any]) -> None:
        """Raise ValueError on every rank unless every rank passes the same JSON-able
        ``config``; the message names the first differing entry and the ranks."""
        mine = json.dumps(config, sort_keys=True, default=repr)
        every = self.comm.allgather(mine)
        if all(text == every[0] for text in every):
            return
        first = _flatten(json.loads(every[0]))
        for rank, text in enumerate(every):
            other = _flatten(json.loads(text))
            for key in sorted(set(first) | set(other)):
                if first.get(key) != other.get(key):
                    raise ValueError(
                        f"{what}: the ranks do not agree: {key} is {first.get(key)!r} on rank 0 but "
                        f"{other.get(key)!r} on rank {rank}; every rank must build the same model, "
                        "optimizer and task"
                    )

    def synchronize_model(self, model: Any, optimizer: Any = None, **config: Any) -> None:
        """Check that every rank holds the same model and optimizer configuration (and the
        same JSON-able ``config``), then give every rank rank 0's parameters and optimizer
        state. Call it before the first step of a hand-written loop."""
        opt = None if optimizer is None else optimizer.state_dict()
        self.check_same("configuration", dict(
            config,
            rnnext=__version__,
            model=model.config,
            optimizer=None if opt is None else {k: v for k, v in opt.items()
                                                 if not isinstance(v, np.ndarray) and k != "step_count"},
        ))
        self.comm.Bcast(model.flat_params, root=0)
        if optimizer is not None:
            optimizer.load_state_dict(self.comm.bcast(opt, root=0))

    def synchronize(self, trainer: Any) -> int:
        """``synchronize_model`` for a Trainer, then rank 0's task and trainer state on
        every rank, and the task sharded. Returns this rank's number of batch rows.
        ``Trainer.fit`` calls it once."""
        task = trainer.task
        if not callable(getattr(task, "shard", None)):
            raise TypeError(f"task: data-parallel training needs a task with shard(rank, size, allreduce); "
                            f"{type(task).__name__} has none")
        self.synchronize_model(trainer.model, trainer.optimizer, clip=trainer.clip, eval_every=trainer.eval_every,
                               validations=getattr(trainer, "validations", None),
                               task={"name": task.name, "config": task.config(), "meta": task.meta()})
        task.load_state_dict(self.comm.bcast(task.state_dict(), root=0))
        trainer.load_state_dict(self.comm.bcast(trainer.state_dict(), root=0))
        return int(task.shard(self.rank, self.size, self.allreduce))

    # ----------------------------------------------------------------------- every step
    def allreduce(self, values: np.ndarray) -> np.ndarray:
        """Sum a contiguous array over all ranks, in place; returns it."""
        self.comm.Allreduce(self.MPI.IN_PLACE, values, op=self.MPI.SUM)
        return values

    def reduce_gradients(self, model: Any, loss: float, weight: float) -> float:
        """After backward: make ``model.flat_grads`` the gradient of the global batch on
        every rank and return the global loss.

        ``loss`` is this rank's loss, a mean over ``weight`` units (rows, or masked-in
        steps); the global loss is the mean over all ranks' units, so each rank's gradient
        counts with its weight. One Allreduce of two numbers, one of ``flat_grads``.
        """
        if not weight > 0:
            raise ValueError(f"weight: expected the loss's weight > 0 on rank {self.rank}, got {weight!r}")
        g = model.flat_grads
        self._scalars[0], self._scalars[1] = loss * weight, weight
        self.allreduce(self._scalars)
        if weight != 1.0:
            g *= g.dtype.type(weight)
        self.allreduce(g)
        g *= g.dtype.type(1.0 / self._scalars[1])
        return float(self._scalars[0] / self._scalars[1])

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (anything picklable) on every rank: for what the ranks' clocks
        decide (time budget, time-spaced validation), which they read at different moments."""
        return self.comm.bcast(value, root=0)

    def check_parameters(self, model: Any, step: int) -> None:
        """Every ``check_every`` steps: RuntimeError on every rank if the parameters are not
        bit for bit the same on every rank."""
        if not self.check_every or step % self.check_every:
            return
        every = self.comm.allgather(zlib.crc32(model.flat_params.tobytes()))
        if len(set(every)) > 1:
            differ = [r for r, c in enumerate(every) if c != every[0]]
            raise RuntimeError(f"the parameters differ between ranks at step {step} (ranks {differ} differ from "
                               "rank 0): the ranks no longer compute the same model")

    # ---------------------------------------------------------------------- checkpoints
    def task_snapshot(self, task: Any) -> Any:
        """On rank 0 the task as ``save_checkpoint`` reads it, holding the state it would have
        in a single process (the per-row entries named by ``task.row_state``, batch on axis
        -2, gathered from every rank); None on the other ranks. Collective."""
        state = task.state_dict()
        for key in getattr(task, "row_state", ()):
            parts: List[Any] = self.comm.gather(state.get(key), root=0)
            if self.rank == 0 and parts[0] is not None:
                shape = list(parts[0].shape)
                shape[-2] = task.batch_size
                full = np.empty(shape, parts[0].dtype)
                for rank, part in enumerate(parts):
                    full[..., rank::self.size, :] = part
                state[key] = full
        return _TaskSnapshot(task, state) if self.rank == 0 else None

    def save_checkpoint(self, path: Any, model: Any, optimizer: Any = None, task: Any = None, trainer: Any = None,
                        extra: Optional[Dict[str, Any]] = None) -> None:
        """``rnnext.checkpoint.save_checkpoint`` for a data-parallel run: every rank calls
        it, rank 0 writes the file (atomically), holding the state of all ranks together,
        which is the state of the equivalent single-process run. (To write it again, e.g.
        elsewhere after an error, rank 0 alone: ``save_checkpoint`` with the
        ``task_snapshot`` taken once.)"""
        from .checkpoint import save_checkpoint

        snapshot = None if task is None else self.task_snapshot(task)
        if self.rank == 0:
            save_checkpoint(path, model, optimizer, snapshot, trainer, extra)


def _flatten(config: Any, prefix: str = "") -> Dict[str, Any]:
    """``{"model": {"hidden_size": 8}}`` -> ``{"model.hidden_size": 8}``."""
    if not isinstance(config, dict):
        return {prefix: config}
    flat: Dict[str, Any] = {}
    for key, value in config.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


class _TaskSnapshot:
    """A task as ``save_checkpoint`` reads it, with the state gathered from every rank."""

    def __init__(self, task: Any, state: Any) -> None:
        self.name, self.config, self.meta = task.name, task.config, task.meta
        self._state = state

    def state_dict(self) -> Dict[str, Any]:
        return dict(self._state)
