"""The ``rnnext`` command line: ``rnnext train`` and ``rnnext sample``.

``rnnext train`` with no options trains a character language model on the standard
library's source for two minutes and prints the held-out bits per character on its last
line. See ``docs/training.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import sys
import time
from typing import Any, Dict, List, Optional

from . import distributed, optim
from ._version import __version__
from .checkpoint import load_checkpoint, save_checkpoint
from .tasks import TASKS, get_task, sample_text
from .training import Trainer

SCHEDULE_FLOOR = 0.01  # the cosine schedule decays to 1% of --lr


def _int_at_least(minimum: int) -> Any:
    """An argparse type: an integer >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


_positive_int, _nonneg_int = _int_at_least(1), _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnext", description="Train and sample vanilla RNNs.")
    parser.add_argument("--version", action="version", version=f"rnnext {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,sample}")

    t = sub.add_parser("train", help="train a model on a built-in task",
                       description="Train a model on a built-in task; the last line printed is its held-out metric.")
    t.add_argument("--task", choices=list(TASKS), default=None, help="the task (default: charlm)")
    t.add_argument("--data", metavar="FILE", help="charlm: a UTF-8 text file (default: the standard library's source)")
    t.add_argument("--hidden", type=_positive_int, metavar="N", help="hidden size (default: per task)")
    t.add_argument("--layers", type=_positive_int, metavar="N", help="stacked layers (default: 1)")
    t.add_argument("--steps", type=_nonneg_int, metavar="N", help="train until step N (counted from the start of the run)")
    t.add_argument("--minutes", type=_positive_float, metavar="M", help="stop after M minutes of training")
    t.add_argument("--optimizer", choices=list(optim.OPTIMIZERS), help="default: adam")
    t.add_argument("--lr", type=_positive_float, help="learning rate (default: per task)")
    t.add_argument("--schedule", choices=["constant", "cosine"], help="learning-rate schedule (default: per task)")
    t.add_argument("--schedule-steps", type=_positive_int, metavar="N",
                   help="length of the cosine schedule (default: --steps)")
    t.add_argument("--clip", type=_positive_float, help="clip the global gradient norm to this (default: per task)")
    t.add_argument("--batch", type=_positive_int, metavar="N",
                   help="sequences per batch (default: per task); under mpiexec -n R, per rank: R x N in all")
    t.add_argument("--bptt", type=_positive_int, metavar="T", help="charlm: characters per truncated-BPTT chunk")
    t.add_argument("--eval-every", type=_positive_int, metavar="N", help="validate every N steps")
    t.add_argument("--save", metavar="CKPT", help="write a checkpoint here at every validation and at the end")
    t.add_argument("--resume", metavar="CKPT", help="continue the run saved in CKPT exactly")
    t.add_argument("--plot", metavar="PNG", help="draw the training and validation loss curves (needs matplotlib)")
    t.add_argument("--seed", type=_nonneg_int, help="seeds the model and the data (default: 0)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="generate text from a charlm checkpoint",
                       description="Generate text from a character model saved by 'rnnext train --save'.")
    s.add_argument("--checkpoint", required=True, metavar="CKPT")
    s.add_argument("--prime", default="", metavar="TEXT", help="text the model reads first (printed too)")
    s.add_argument("--length", type=_nonneg_int, default=500, metavar="N", help="characters to generate")
    s.add_argument("--temperature", type=_positive_float, default=0.8, metavar="T",
                   help="below 1: safer, above 1: wilder (default: 0.8)")
    s.add_argument("--seed", type=_nonneg_int, default=None)
    return parser


# ------------------------------------------------------------------------------ train
RECIPE = ("task", "data", "hidden", "layers", "optimizer", "lr", "schedule", "schedule_steps", "clip", "batch",
          "bptt", "eval_every", "seed")


def _make_schedule(settings: Dict[str, Any]) -> Optional[Any]:
    if settings["schedule"] == "cosine":
        return optim.cosine_schedule(settings["schedule_steps"], final_factor=SCHEDULE_FLOOR)
    return None


def _new_run(args: argparse.Namespace, dist: Optional[distributed.Distributed]) -> tuple:
    name = args.task or "charlm"
    d = TASKS[name].defaults
    if args.data is not None and name != "charlm":
        raise ValueError(f"--data: only the charlm task reads a file, got --task {name}")
    if args.bptt is not None and name != "charlm":
        raise ValueError(f"--bptt: only for the charlm task, got --task {name}")
    kwargs: Dict[str, Any] = {"seed": 0 if args.seed is None else args.seed}
    if args.batch is not None:
        kwargs["batch_size"] = args.batch
    if dist is not None:  # --batch is per rank
        default = inspect.signature(TASKS[name]).parameters["batch_size"].default
        kwargs["batch_size"] = dist.size * kwargs.get("batch_size", default)
    if name == "charlm":
        kwargs.update({k: v for k, v in (("data", args.data), ("bptt", args.bptt)) if v is not None})
    steps = args.steps if args.steps is not None or args.minutes is not None else d["steps"]
    settings = dict(
        task=name,
        hidden=args.hidden or d["hidden"],
        layers=args.layers or d["layers"],
        optimizer=args.optimizer or d["optimizer"],
        lr=args.lr or d["lr"],
        schedule=args.schedule or d.get("schedule", "constant"),
        schedule_steps=args.schedule_steps or steps or d["steps"],
        clip=args.clip or d["clip"],
        eval_every=args.eval_every or d["eval_every"],
        seed=kwargs["seed"],
    )
    if settings["schedule"] == "cosine" and not settings["schedule_steps"]:
        raise ValueError("--schedule-steps: the cosine schedule needs a length; give --steps or --schedule-steps")
    task = get_task(name, **kwargs)
    model = task.build_model(settings["hidden"], settings["layers"], seed=settings["seed"])
    opt = optim.OPTIMIZERS[settings["optimizer"]](model, lr=settings["lr"], lr_schedule=_make_schedule(settings))
    trainer = Trainer(task, model, opt, clip=settings["clip"], eval_every=settings["eval_every"], dist=dist)
    return task, trainer, settings


def _resumed_run(args: argparse.Namespace, dist: Optional[distributed.Distributed]) -> tuple:
    given = [k for k in RECIPE if getattr(args, k) is not None]
    ckpt = load_checkpoint(args.resume)
    settings = ckpt.extra.get("settings")
    if ckpt.task is None or ckpt.optimizer is None or ckpt.trainer is None or not isinstance(settings, dict):
        raise ValueError(f"--resume: {args.resume!r} was not written by 'rnnext train'")
    clash = [k for k in given if not (k == "task" and args.task == settings["task"])]
    if clash:
        flags = ", ".join("--" + k.replace("_", "-") for k in clash)
        raise ValueError(f"{flags}: the run is continued with the settings saved in {args.resume!r}; "
                         "only --steps, --minutes, --save, --plot and --quiet may be given with --resume")
    task = ckpt.build_task()
    ckpt.optimizer.lr_schedule = _make_schedule(settings)
    trainer = Trainer(task, ckpt.model, ckpt.optimizer, clip=settings["clip"], eval_every=settings["eval_every"],
                      dist=dist)
    trainer.load_state_dict(ckpt.trainer)
    return task, trainer, settings


def _check_plot_available() -> None:
    """Fail before training, not after it, when the plot cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("--plot: needs matplotlib, which is not installed (pip install matplotlib, "
                         "or pip install 'rnnext[train]')") from None


def plot_history(history: Dict[str, List[float]], path: str, title: str = "", ylabel: str = "loss") -> None:
    """Training loss (a running mean) and validation loss against the step, as a PNG; the
    loss axis is logarithmic when the losses span more than two decades."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    train = np.asarray(history["train_loss"], dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if train.size:
        w = max(1, min(100, train.size // 20))
        smooth = np.convolve(train, np.ones(w) / w, mode="valid")
        ax.plot(np.arange(w, train.size + 1), smooth, label=f"train (mean of {w} steps)" if w > 1 else "train")
    if history["val_step"]:
        ax.plot(history["val_step"], history["val_loss"], "o-", label="validation")
    values = np.concatenate([train, np.asarray(history["val_loss"], dtype=float)])
    if values.size and values.min() > 0 and values.max() > 100 * values.min():
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train_command(args: argparse.Namespace, dist: Optional[distributed.Distributed] = None) -> int:
    if args.plot:
        _check_plot_available()
    task, trainer, settings = _resumed_run(args, dist) if args.resume else _new_run(args, dist)
    d = type(task).defaults
    if args.steps is None and args.minutes is None:
        steps, minutes = d["steps"], d["minutes"]
    else:
        steps, minutes = args.steps, args.minutes
    model, opt = trainer.model, trainer.optimizer
    if dist is not None:
        threads = f"{dist.threads} thread" + ("s" if dist.threads > 1 else "")
        print(f"data-parallel over {dist.size} ranks x {threads}, global batch {task.batch_size} "
              f"({task.batch_size // dist.size}{'+' if task.batch_size % dist.size else ''} per rank)")
    print(f"task {task.name}" + (f": {task.source}" if hasattr(task, "source") else ""))
    print(f"model {model!r}, {model.num_parameters()} parameters")
    print(f"optimizer {opt!r}, schedule {settings['schedule']}, clip {settings['clip']}, seed {settings['seed']}")
    budget = [f"until step {steps}"] if steps is not None else []
    budget += [f"for at most {minutes:g} minutes"] if minutes is not None else []
    print(("resuming at step %d, " % trainer.step if args.resume else "") + "training " + " or ".join(budget),
          flush=True)

    def save(path: str) -> None:
        (save_checkpoint if dist is None else dist.save_checkpoint)(path, model, opt, task, trainer,
                                                                     extra={"settings": settings})

    callbacks = (lambda tr, result: save(args.save),) if args.save else ()
    start, first_step = time.perf_counter(), trainer.step
    final = trainer.fit(steps, minutes, progress=not args.quiet, callbacks=callbacks,
                        log=lambda line: print(line, flush=True))
    seconds = time.perf_counter() - start
    print(f"trained {trainer.step - first_step} steps in {seconds:.1f} s (now at step {trainer.step}); "
          f"final held-out loss {final['loss']:.4f}")
    if args.save:
        save(args.save)
        print(f"saved checkpoint {args.save}")
    if args.plot and (dist is None or dist.rank == 0):
        plot_history(trainer.history, args.plot, title=f"rnnext train --task {task.name}", ylabel=task.loss_name)
        print(f"saved plot {args.plot}")
    print(task.format_metric(final["metric"]), flush=True)
    return 0


# ----------------------------------------------------------------------------- sample
def sample_command(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.checkpoint)
    if ckpt.task is None or "vocab" not in ckpt.task["meta"]:
        kind = ckpt.task["name"] if ckpt.task else "bare model"
        raise ValueError(f"--checkpoint: sampling needs a charlm checkpoint, {args.checkpoint!r} holds a {kind} model")
    text = sample_text(ckpt.model, ckpt.task["meta"]["vocab"], prime=args.prime, length=args.length,
                       temperature=args.temperature, seed=args.seed)
    sys.stdout.write(args.prime + text + "\n")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    dist = None
    try:
        if args.command == "sample":
            return sample_command(args)
        dist = distributed.from_environment()  # mpiexec -n N rnnext train
        if dist is None or dist.rank == 0:
            return train_command(args, dist)
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # rank 0 alone prints
            return train_command(args, dist)
    except (ValueError, FileNotFoundError, FloatingPointError, RuntimeError) as e:
        where = "" if dist is None else f" (rank {dist.rank} of {dist.size})"
        print(f"rnnext {args.command}: error{where}: {e}", file=sys.stderr)
        if dist is not None:  # the other ranks may be waiting for this one: end them all
            dist.abort(1)
        return 1
