"""A small training loop: minibatch steps, gradient clipping, periodic validation, a
progress bar, a step and/or time budget, checkpoints.

The loop in ``Trainer.fit`` is the whole story; copy it when you need something else::

    optimizer.zero_grad()
    loss = task.train_step(model)          # next batch, forward, loss, backward
    clip_grad_norm(model, clip)
    optimizer.step()
"""

from __future__ import annotations

import importlib
import math
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from ._checks import check_int
from .optim import Optimizer, clip_grad_norm
from .rnn import RNN
from .tasks import Task

Callback = Callable[["Trainer", Dict[str, float]], None]


class Trainer:
    """Trains ``model`` on ``task`` with ``optimizer``.

    ``history`` records the training loss of every step and each validation result; with
    the model, optimizer and task it is what a checkpoint holds, so a run saved and resumed
    continues exactly as if it had not stopped (with ``dropout = 0``: the dropout masks come
    from the engine's own generator, which checkpoints do not capture).
    """

    def __init__(
        self,
        task: Task,
        model: RNN,
        optimizer: Optimizer,
        *,
        clip: Optional[float] = 1.0,
        eval_every: int = 100,
    ) -> None:
        if not isinstance(task, Task):
            raise TypeError(f"task: expected an rnnext.tasks.Task, got {type(task).__name__}")
        if not isinstance(model, RNN):
            raise TypeError(f"model: expected an rnnext.RNN, got {type(model).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected an rnnext.optim optimizer, got {type(optimizer).__name__}")
        if optimizer.model is not model:
            raise ValueError("optimizer: it updates a different model than the one given")
        if model.batch_first:  # it would read (T, B, ...) batches as (B, T, ...) without a word
            raise ValueError("model: the tasks feed time-major (T, B, ...) batches; got a batch_first=True model")
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0):
            raise ValueError(f"clip: expected a float > 0 or None, got {clip!r}")
        self.task, self.model, self.optimizer = task, model, optimizer
        self.clip = None if clip is None else float(clip)
        self.eval_every = check_int("eval_every", eval_every, 1)
        self.step = 0
        self.history: Dict[str, List[float]] = {"train_loss": [], "val_step": [], "val_loss": [], "val_metric": []}

    # ------------------------------------------------------------------------------ loop
    def fit(
        self,
        steps: Optional[int] = None,
        minutes: Optional[float] = None,
        *,
        progress: bool = True,
        callbacks: Sequence[Callback] = (),
        log: Callable[[str], None] = print,
    ) -> Dict[str, float]:
        """Train until ``self.step`` reaches ``steps`` or ``minutes`` of wall time have passed,
        whichever comes first; validate every ``eval_every`` steps and call each callback
        with ``(trainer, result)`` after it. Returns the final evaluation on all held-out
        data (``{"loss", "metric"}``). Ctrl-C stops early, still returning that evaluation.
        """
        if steps is None and minutes is None:
            raise ValueError("fit: give steps, minutes or both, got neither")
        if steps is not None:
            steps = check_int("steps", steps, 0)
        if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float))
                                    or not minutes > 0):
            raise ValueError(f"minutes: expected a float > 0, got {minutes!r}")
        deadline = None if minutes is None else time.monotonic() + 60.0 * minutes
        bar = _progress_bar(steps, self.step) if progress else None
        write = bar.write if bar is not None else log
        t_last, step_last = time.perf_counter(), self.step
        try:
            while (steps is None or self.step < steps) and (deadline is None or time.monotonic() < deadline):
                self.optimizer.zero_grad()
                loss = self.task.train_step(self.model)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"training loss is {loss} at step {self.step + 1}; lower the learning rate")
                if self.clip is not None:
                    clip_grad_norm(self.model, self.clip)
                self.optimizer.step()
                self.step += 1
                self.history["train_loss"].append(loss)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                if self.step % self.eval_every == 0:
                    result = self.validate()
                    now = time.perf_counter()
                    speed = (self.step - step_last) / max(now - t_last, 1e-9)
                    t_last, step_last = now, self.step
                    write(self._line(result, speed))
                    for cb in callbacks:
                        cb(self, result)
        except KeyboardInterrupt:
            write(f"interrupted at step {self.step}")
        finally:
            if bar is not None:
                bar.close()
        return self.task.evaluate(self.model, final=True)

    def validate(self) -> Dict[str, float]:
        """Evaluate on (part of) the held-out data and record it in ``history``."""
        result = self.task.evaluate(self.model)
        self.history["val_step"].append(self.step)
        self.history["val_loss"].append(result["loss"])
        self.history["val_metric"].append(result["metric"])
        return result

    def _line(self, result: Dict[str, float], speed: float) -> str:
        recent = self.history["train_loss"][-self.eval_every:]
        train = sum(recent) / len(recent)
        return (f"step {self.step:6d}  train loss {train:.4f}  val loss {result['loss']:.4f}  "
                f"{self.task.metric} {result['metric']:.4f}  ({speed:.1f} steps/s)")

    # ----------------------------------------------------------------------- checkpoints
    def state_dict(self) -> Dict[str, Any]:
        return {"step": self.step, "history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if not isinstance(state, dict) or set(state) != {"step", "history"}:
            raise ValueError(f"state: expected the keys ['history', 'step'], got {state!r:.200}")
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"state: step should be an int >= 0, got {step!r}")
        history = state["history"]
        if not isinstance(history, dict) or set(history) != set(self.history):
            raise ValueError(f"state: history should have the keys {sorted(self.history)}")
        if len(history["train_loss"]) != step:
            raise ValueError(f"state: history has {len(history['train_loss'])} training losses for {step} steps")
        self.step = step
        self.history = {k: list(v) for k, v in history.items()}


def _progress_bar(total: Optional[int], initial: int) -> Any:
    """A tqdm bar on stderr, or None when tqdm is not installed (lines are printed instead)."""
    try:
        tqdm = importlib.import_module("tqdm.auto").tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="step", file=sys.stderr, dynamic_ncols=True, leave=False)
