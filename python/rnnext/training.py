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
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ._checks import check_int
from .optim import Optimizer, clip_grad_norm
from .rnn import RNN
from .tasks import TaskProtocol

Callback = Callable[["Trainer", Dict[str, float]], None]


def clock() -> float:
    """Seconds of wall time (time.perf_counter); the one clock of the training loop."""
    return time.perf_counter()


def cosine_factor(fraction: float, final_factor: float = 0.01) -> float:
    """Half a cosine from 1 at ``fraction`` 0 down to ``final_factor`` at 1 (and after)."""
    frac = min(1.0, max(0.0, fraction))
    return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * frac))


class Trainer:
    """Trains ``model`` on ``task`` with ``optimizer``.

    ``task`` is any object with the methods of ``rnnext.tasks.TaskProtocol``
    (``train_step(model) -> loss`` and ``evaluate(model, final=False) -> {"loss",
    "metric"}``); ``rnnext.tasks.Task`` subclasses are. Checkpoints also need its
    ``state_dict``/``load_state_dict``/``config``. The name of its metric in the log lines
    is its ``metric`` attribute (``"metric"`` when it has none).

    Validation runs every ``eval_every`` steps and, when ``fit`` is given a time budget,
    also every 1/``validations`` of that budget, so that a short run logs progress too.

    ``history`` records the training loss of every step and each validation result;
    ``seconds`` is the run's training time so far (all ``fit`` calls, resumed runs
    included). With the model, optimizer and task they are what a checkpoint holds, so a
    run saved and resumed continues exactly as if it had not stopped (with ``dropout = 0``:
    the dropout masks come from the engine's own generator, which checkpoints do not
    capture). ``final`` is the last ``fit``'s final evaluation on all held-out data
    (``{"step", "loss", "metric"}``).
    """

    def __init__(
        self,
        task: TaskProtocol,
        model: RNN,
        optimizer: Optimizer,
        *,
        clip: Optional[float] = 1.0,
        eval_every: Optional[int] = 100,
        validations: int = 10,
    ) -> None:
        if not isinstance(task, TaskProtocol):
            missing = [m for m in ("train_step", "evaluate") if not callable(getattr(task, m, None))]
            raise TypeError(f"task: expected an object with the methods train_step(model) and evaluate(model, "
                            f"final=False) (rnnext.tasks.TaskProtocol), got {type(task).__name__}, which has no "
                            f"{' or '.join(missing)}")
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
        self.eval_every = None if eval_every is None else check_int("eval_every", eval_every, 1)
        self.validations = check_int("validations", validations, 1)
        self.step = 0
        self.seconds = 0.0
        self.history: Dict[str, List[float]] = {"train_loss": [], "val_step": [], "val_loss": [], "val_metric": []}
        self.final: Optional[Dict[str, float]] = None
        self._budget: Tuple[Optional[int], Optional[float]] = (None, None)
        self._clock_start: Optional[float] = None  # perf_counter at the start of the running fit

    @property
    def metric_name(self) -> str:
        return str(getattr(self.task, "metric", "") or "metric")

    # ------------------------------------------------------------------------------ loop
    def elapsed(self) -> float:
        """The run's training time in seconds, up to now (during ``fit`` too)."""
        if self._clock_start is None:
            return self.seconds
        return self.seconds + (clock() - self._clock_start)

    def progress(self) -> float:
        """The fraction of the running ``fit``'s budget used, in [0, 1]: the larger of
        step / steps and elapsed() / (60 * minutes), for the budgets given."""
        steps, minutes = self._budget
        fracs = [0.0]
        if steps:
            fracs.append(self.step / steps)
        if minutes:
            fracs.append(self.elapsed() / (60.0 * minutes))
        return min(1.0, max(fracs))

    def fit(
        self,
        steps: Optional[int] = None,
        minutes: Optional[float] = None,
        *,
        progress: bool = True,
        callbacks: Sequence[Callback] = (),
        log: Callable[[str], None] = print,
    ) -> Dict[str, float]:
        """Train until ``self.step`` reaches ``steps`` or the run's training time
        (``self.seconds``, validations included) reaches ``minutes``, whichever comes first;
        both count from the start of the run, so a resumed run given the same budget ends
        where the uninterrupted one would. Validate every ``eval_every`` steps and, with
        ``minutes``, every ``minutes / validations``, calling each callback with ``(trainer,
        result)`` after it. Returns the final evaluation on all held-out data (``{"loss",
        "metric"}``, also kept in ``self.final``). Ctrl-C stops early, still returning it.
        """
        if steps is None and minutes is None:
            raise ValueError("fit: give steps, minutes or both, got neither")
        if steps is not None:
            steps = check_int("steps", steps, 0)
        if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float))
                                    or not minutes > 0):
            raise ValueError(f"minutes: expected a float > 0, got {minutes!r}")
        budget_s = None if minutes is None else 60.0 * minutes
        self._budget = (steps, minutes)
        every_s = None if budget_s is None else budget_s / self.validations
        next_val_s = None if every_s is None else every_s * (math.floor(self.seconds / every_s) + 1)
        bar = _progress_bar(steps, self.step) if progress else None
        write = bar.write if bar is not None else log
        t_last, step_last = clock(), self.step
        self._clock_start = clock()
        try:
            while (steps is None or self.step < steps) and (budget_s is None or self.elapsed() < budget_s):
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
                due = self.eval_every is not None and self.step % self.eval_every == 0
                if next_val_s is not None and self.elapsed() >= next_val_s:
                    # the last time point is the final evaluation itself
                    due = due or self.elapsed() < budget_s - 0.5 * every_s  # type: ignore[operator]
                    next_val_s = every_s * (math.floor(self.elapsed() / every_s) + 1)  # type: ignore[operator]
                if due:
                    result = self.validate()
                    now = clock()
                    speed = (self.step - step_last) / max(now - t_last, 1e-9)
                    write(self._line(result, speed, self.step - step_last))
                    t_last, step_last = now, self.step
                    for cb in callbacks:
                        cb(self, result)
        except KeyboardInterrupt:
            write(f"interrupted at step {self.step}")
        finally:
            self.seconds = self.elapsed()
            self._clock_start = None
            if bar is not None:
                bar.close()
        final = self.task.evaluate(self.model, final=True)
        self.final = {"step": float(self.step), "loss": float(final["loss"]), "metric": float(final["metric"])}
        return final

    def validate(self) -> Dict[str, float]:
        """Evaluate on (part of) the held-out data and record it in ``history``."""
        result = self.task.evaluate(self.model)
        self.history["val_step"].append(self.step)
        self.history["val_loss"].append(result["loss"])
        self.history["val_metric"].append(result["metric"])
        return result

    def _line(self, result: Dict[str, float], speed: float, since: int) -> str:
        recent = self.history["train_loss"][-max(1, since):]
        train = sum(recent) / len(recent)
        return (f"step {self.step:6d}  time {self.elapsed():6.1f} s  train loss {train:.4f}  "
                f"val loss {result['loss']:.4f}  {self.metric_name} {result['metric']:.4f}  "
                f"steps/s {speed:.1f}")

    # ----------------------------------------------------------------------- checkpoints
    def state_dict(self) -> Dict[str, Any]:
        return {"step": self.step, "seconds": self.seconds, "history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        # "seconds" is absent from checkpoints written before it was kept (read as 0).
        if not isinstance(state, dict) or not {"step", "history"} <= set(state) <= {"step", "seconds", "history"}:
            raise ValueError(f"state: expected the keys ['history', 'seconds', 'step'], got {state!r:.200}")
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"state: step should be an int >= 0, got {step!r}")
        seconds = state.get("seconds", 0.0)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
            raise ValueError(f"state: seconds should be a float >= 0, got {seconds!r}")
        history = state["history"]
        if not isinstance(history, dict) or set(history) != set(self.history):
            raise ValueError(f"state: history should have the keys {sorted(self.history)}")
        if len(history["train_loss"]) != step:
            raise ValueError(f"state: history has {len(history['train_loss'])} training losses for {step} steps")
        self.step = step
        self.seconds = float(seconds)
        self.history = {k: list(v) for k, v in history.items()}


def budget_cosine_schedule(trainer: Trainer, final_factor: float = 0.01) -> Callable[[int], float]:
    """An ``lr_schedule`` following half a cosine over the trainer's budget (its
    ``progress()``: steps or minutes, whichever runs out first), from 1 to ``final_factor``;
    with a time budget the decay follows the clock, so it ends when the time does."""
    return lambda step: cosine_factor(trainer.progress(), final_factor)


def _progress_bar(total: Optional[int], initial: int) -> Any:
    """A tqdm bar on stderr, or None when tqdm is not installed (lines are printed instead)."""
    try:
        tqdm = importlib.import_module("tqdm.auto").tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="step", file=sys.stderr, dynamic_ncols=True, leave=False)
