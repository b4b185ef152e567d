"""The ``rnnext`` command line: ``rnnext train``, ``rnnext sample`` and ``rnnext complete``.

``rnnext train`` with no options trains a character language model on the standard
library's source (at most 3 minutes in all) and prints the held-out bits per character on
its last line. See ``docs/training.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from typing import Any, Dict, List, Optional, Tuple

from . import optim, textgen
from ._version import __version__
from .checkpoint import load_checkpoint, save_checkpoint
from .tasks import TASKS, get_task
from .training import Trainer, budget_cosine_schedule

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


def _float_above(minimum: float, inclusive: bool) -> Any:
    """An argparse type: a finite number > minimum (>= with ``inclusive``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (value >= minimum if inclusive else value > minimum) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a finite number {'>=' if inclusive else '>'} {minimum:g}, "
                                             f"got {text}")
        return value

    return parse


_positive_float, _nonneg_float = _float_above(0.0, False), _float_above(0.0, True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnext", description="Train and sample vanilla RNNs.")
    parser.add_argument("--version", action="version", version=f"rnnext {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,sample,complete}")

    t = sub.add_parser("train", help="train a model on a built-in task",
                       description="Train a model on a built-in task; the last line printed is its held-out metric.")
    t.add_argument("--task", choices=list(TASKS), default=None, help="the task (default: charlm)")
    t.add_argument("--data", metavar="FILE", help="charlm: a UTF-8 text file (default: the standard library's source)")
    t.add_argument("--hidden", type=_positive_int, metavar="N", help="hidden size (default: per task)")
    t.add_argument("--layers", type=_positive_int, metavar="N", help="stacked layers (default: 1)")
    t.add_argument("--steps", type=_nonneg_int, metavar="N", help="train until step N (counted from the start of the run)")
    t.add_argument("--minutes", type=_positive_float, metavar="M",
                   help="stop when the run has trained M minutes (counted from the start of the run)")
    t.add_argument("--optimizer", choices=list(optim.OPTIMIZERS), help="default: adam")
    t.add_argument("--lr", type=_positive_float, help="learning rate (default: per task)")
    t.add_argument("--schedule", choices=["constant", "cosine"], help="learning-rate schedule (default: per task)")
    t.add_argument("--schedule-steps", type=_positive_int, metavar="N",
                   help="length of the cosine schedule (default: the budget: --steps, else --minutes)")
    t.add_argument("--clip", type=_positive_float, help="clip the global gradient norm to this (default: per task)")
    t.add_argument("--batch", type=_positive_int, metavar="N", help="sequences per batch (default: per task)")
    t.add_argument("--bptt", type=_positive_int, metavar="T", help="charlm: characters per truncated-BPTT chunk")
    t.add_argument("--eval-every", type=_positive_int, metavar="N",
                   help="validate every N steps (with a time budget also 10 times per run, spaced by time)")
    t.add_argument("--save", metavar="CKPT", help="write a checkpoint here at every validation and at the end")
    t.add_argument("--resume", metavar="CKPT",
                   help="continue the run saved in CKPT exactly, to the end it was started with")
    t.add_argument("--plot", metavar="PNG", help="draw the training and validation loss curves (needs matplotlib)")
    t.add_argument("--seed", type=_nonneg_int, help="seeds the model and the data (default: 0)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="generate text from a charlm checkpoint",
                       description="Generate text from a character model saved by 'rnnext train --save'.")
    s.add_argument("--checkpoint", required=True, metavar="CKPT")
    s.add_argument("--prime", default="", metavar="TEXT", help="text the model reads first (printed too)")
    s.add_argument("--length", type=_nonneg_int, default=500, metavar="N", help="characters to generate")
    s.add_argument("--temperature", type=_nonneg_float, default=textgen.DEFAULT_TEMPERATURE, metavar="T",
                   help=f"below 1: safer, above 1: wilder, 0: always the likeliest character "
                        f"(default: {textgen.DEFAULT_TEMPERATURE})")
    s.add_argument("--seed", type=_nonneg_int, default=None)

    c = sub.add_parser("complete", help="the most probable completions of a prefix (autocomplete)",
                       description="Print the most probable completions of PREFIX by a character model, one per "
                                   "line as probability<TAB>text, most probable first (newlines, tabs and "
                                   "backslashes in the text escaped as \\n, \\t, \\\\).")
    c.add_argument("prefix", metavar="PREFIX", help="the text typed so far")
    c.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="a charlm checkpoint, or a model file saved with its vocabulary")
    c.add_argument("--k", type=_positive_int, default=5, metavar="K", help="completions to print (default: 5)")
    c.add_argument("--max-length", type=_positive_int, default=20, metavar="N",
                   help="characters per completion at most (default: 20)")
    c.add_argument("--stop", default=" \n\t", metavar="CHARS",
                   help="a completion ends with the first of these characters (default: space, newline, tab)")
    c.add_argument("--beam", type=_positive_int, default=None, metavar="W",
                   help="live strings kept per character (default: exact for small searches, else 32)")
    return parser


# ------------------------------------------------------------------------------ train
RECIPE = ("task", "data", "hidden", "layers", "optimizer", "lr", "schedule", "schedule_steps", "clip", "batch",
          "bptt", "eval_every", "seed")
SAFE_DIR = tempfile.gettempdir()  # where a run goes when its --save path fails at the end


def _budget(args: argparse.Namespace, d: Dict[str, Any]) -> Tuple[Optional[int], Optional[float]]:
    """(steps, minutes) of a new run: the options given, else the task's defaults."""
    if args.steps is None and args.minutes is None:
        return d["steps"], d["minutes"]
    return args.steps, args.minutes


def _make_schedule(settings: Dict[str, Any], trainer: Trainer) -> Optional[Any]:
    """The cosine schedule over --schedule-steps, else over the budget: its steps, or with
    a time budget only, its minutes (the decay then follows the clock)."""
    if settings["schedule"] != "cosine":
        return None
    length = settings["schedule_steps"] or settings["steps"]
    if length:
        return optim.cosine_schedule(length, final_factor=SCHEDULE_FLOOR)
    return budget_cosine_schedule(trainer, final_factor=SCHEDULE_FLOOR)


def _new_run(args: argparse.Namespace) -> tuple:
    name = args.task or "charlm"
    d = TASKS[name].defaults
    if args.data is not None and name != "charlm":
        raise ValueError(f"--data: only the charlm task reads a file, got --task {name}")
    if args.bptt is not None and name != "charlm":
        raise ValueError(f"--bptt: only for the charlm task, got --task {name}")
    kwargs: Dict[str, Any] = {"seed": 0 if args.seed is None else args.seed}
    if args.batch is not None or "batch" in d:
        kwargs["batch_size"] = args.batch or d["batch"]
    if name == "charlm":
        kwargs.update(bptt=args.bptt or d["bptt"], embedding_size=d["embedding"])
        if args.data is not None:
            kwargs["data"] = args.data
    steps, minutes = _budget(args, d)
    settings = dict(
        task=name,
        hidden=args.hidden or d["hidden"],
        layers=args.layers or d["layers"],
        optimizer=args.optimizer or d["optimizer"],
        lr=args.lr or d["lr"],
        schedule=args.schedule or d.get("schedule", "constant"),
        schedule_steps=args.schedule_steps,
        clip=args.clip or d["clip"],
        eval_every=args.eval_every or d["eval_every"],
        validations=d.get("validations", 10),
        seed=kwargs["seed"],
        steps=steps,
        minutes=minutes,
    )
    task = get_task(name, **kwargs)
    model = task.build_model(settings["hidden"], settings["layers"], seed=settings["seed"])
    opt = optim.OPTIMIZERS[settings["optimizer"]](model, lr=settings["lr"])
    trainer = Trainer(task, model, opt, clip=settings["clip"], eval_every=settings["eval_every"],
                      validations=settings["validations"])
    opt.lr_schedule = _make_schedule(settings, trainer)
    return task, trainer, settings


def _resumed_run(args: argparse.Namespace) -> tuple:
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
    d = type(task).defaults
    if "steps" not in settings:  # written before the budget was saved: the task's defaults
        settings.update(steps=d["steps"], minutes=d["minutes"],
                        schedule_steps=settings.get("schedule_steps") or d["steps"])
    settings.setdefault("validations", d.get("validations", 10))
    if args.steps is not None or args.minutes is not None:  # the budget changed explicitly
        settings.update(steps=args.steps, minutes=args.minutes)
    trainer = Trainer(task, ckpt.model, ckpt.optimizer, clip=settings["clip"], eval_every=settings["eval_every"],
                      validations=settings["validations"])
    trainer.load_state_dict(ckpt.trainer)
    ckpt.optimizer.lr_schedule = _make_schedule(settings, trainer)
    return task, trainer, settings


def _check_output(option: str, path: str) -> None:
    """Fail before training, not after it, when ``path`` cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{option}: {path!r} is a directory; expected a file name")
    if not os.path.isdir(folder):
        raise ValueError(f"{option}: cannot write {path!r}: the directory {folder!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: cannot write {path!r}: the directory {folder!r} is not writable")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ValueError(f"{option}: cannot write {path!r}: the file is not writable")


def _check_plot_available() -> None:
    """Fail before training, not after it, when the plot cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("--plot: needs matplotlib, which is not installed (pip install matplotlib, "
                         "or pip install 'rnnext[train]')") from None


def plot_series(history: Dict[str, List[float]], final: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
    """What ``plot_history`` draws, as arrays: the training loss (a running mean) and the
    validation loss against the step, and the validation metric with the final
    evaluation on all held-out data as its last point."""
    import numpy as np

    train = np.asarray(history["train_loss"], dtype=float)
    w = max(1, min(100, train.size // 20))
    out: Dict[str, Any] = {"window": w, "train_step": np.arange(w, train.size + 1),
                           "train_loss": np.convolve(train, np.ones(w) / w, mode="valid") if train.size else train,
                           "val_step": np.asarray(history["val_step"], float),
                           "val_loss": np.asarray(history["val_loss"], float),
                           "metric_step": np.asarray(history["val_step"], float),
                           "metric": np.asarray(history["val_metric"], float)}
    if final is not None:
        out["metric_step"] = np.append(out["metric_step"], final["step"])
        out["metric"] = np.append(out["metric"], final["metric"])
    return out


def plot_history(history: Dict[str, List[float]], path: str, title: str = "", ylabel: str = "loss",
                 final: Optional[Dict[str, float]] = None, metric: str = "") -> None:
    """A PNG of two panels against the step: the training loss (running mean) and the
    validation loss (``ylabel``; log scale when they span more than two decades), and the
    validation metric in the unit printed (``metric``), ending at the ``final`` held-out
    evaluation (a star)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    series = plot_series(history, final)
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(7, 6.4), sharex=True)
    w = series["window"]
    if series["train_loss"].size:
        ax.plot(series["train_step"], series["train_loss"], label=f"train (mean of {w} steps)" if w > 1 else "train")
    if series["val_step"].size:
        ax.plot(series["val_step"], series["val_loss"], "o-", label="validation")
    values = np.concatenate([series["train_loss"], series["val_loss"]])
    if values.size and values.min() > 0 and values.max() > 100 * values.min():
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    n = len(history["val_step"])
    if series["metric"].size:
        bx.plot(series["metric_step"][:n], series["metric"][:n], "o-", color="C1", label="validation")
    if final is not None:
        bx.plot([final["step"]], [final["metric"]], "*", color="C3", markersize=14,
                label=f"final, all held-out data: {final['metric']:.4g}")
    bx.set_xlabel("step")
    bx.set_ylabel(metric or "metric")
    bx.grid(alpha=0.3)
    bx.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _rescue(save: Any, error: OSError, args: argparse.Namespace) -> str:
    """Write the run to a safe place after --save failed; returns the message to print."""
    safe = os.path.join(SAFE_DIR, f"rnnext-rescued-{os.getpid()}-{time.strftime('%Y%m%d-%H%M%S')}.ckpt")
    try:
        save(safe)
    except OSError as e2:
        return (f"--save: cannot write {args.save!r} ({error.strerror or error}); saving to {safe!r} failed too "
                f"({e2.strerror or e2}): the trained model is lost")
    return (f"--save: cannot write {args.save!r} ({error.strerror or error}); the run was saved to {safe!r} "
            "instead (resume it with --resume)")


def train_command(args: argparse.Namespace) -> int:
    for option, path in (("--save", args.save), ("--plot", args.plot)):
        if path:
            _check_output(option, path)
    if args.plot:
        _check_plot_available()
    task, trainer, settings = _resumed_run(args) if args.resume else _new_run(args)
    steps, minutes = settings["steps"], settings["minutes"]
    model, opt = trainer.model, trainer.optimizer
    print(f"task {task.name}" + (f": {task.source}" if hasattr(task, "source") else ""))
    print(f"model {model!r}, {model.num_parameters()} parameters")
    sched = settings["schedule"]
    if sched == "cosine":
        sched += f" over {settings['schedule_steps'] or steps} steps" if settings["schedule_steps"] or steps \
            else f" over {minutes:g} minutes"
    print(f"optimizer {opt!r}, schedule {sched}, clip {settings['clip']}, seed {settings['seed']}")
    budget = [f"until step {steps}"] if steps is not None else []
    budget += [f"for at most {minutes:g} minutes of training"] if minutes is not None else []
    print((f"resuming at step {trainer.step} ({trainer.seconds:.1f} s trained), " if args.resume else "")
          + "training " + " or ".join(budget), flush=True)

    def save(path: str) -> None:
        save_checkpoint(path, model, opt, task, trainer, extra={"settings": settings})

    warned: List[str] = []

    def periodic_save(tr: Trainer, result: Dict[str, float]) -> None:
        try:
            save(args.save)
        except OSError as e:  # keep training; the save at the end tries again
            if not warned:
                warned.append(args.save)
                print(f"rnnext train: warning: --save: cannot write {args.save!r} ({e.strerror or e}); "
                      "training goes on", file=sys.stderr, flush=True)

    callbacks = (periodic_save,) if args.save else ()
    start, first_step = time.perf_counter(), trainer.step
    final = trainer.fit(steps, minutes, progress=not args.quiet, callbacks=callbacks,
                        log=lambda line: print(line, flush=True))
    seconds = time.perf_counter() - start
    print(f"trained {trainer.step - first_step} steps in {seconds:.1f} s (now at step {trainer.step}, "
          f"{trainer.seconds:.1f} s trained); final held-out loss {final['loss']:.4f}")
    errors: List[str] = []
    if args.save:
        try:
            save(args.save)
            print(f"saved checkpoint {args.save}")
        except OSError as e:
            errors.append(_rescue(save, e, args))
    if args.plot:
        try:
            plot_history(trainer.history, args.plot, title=f"rnnext train --task {task.name}",
                         ylabel=task.loss_name, final=trainer.final, metric=task.metric)
            print(f"saved plot {args.plot}")
        except OSError as e:
            errors.append(f"--plot: cannot write {args.plot!r} ({e.strerror or e})")
    for message in errors:
        print(f"rnnext train: error: {message}", file=sys.stderr, flush=True)
    print(task.format_metric(final["metric"]), flush=True)
    return 1 if errors else 0


# ------------------------------------------------------------------- sample, complete
def _char_model(path: str) -> textgen.CharModel:
    try:
        return textgen.load(path)
    except ValueError as e:
        raise ValueError(f"--checkpoint: {e}") from e


def sample_command(args: argparse.Namespace) -> int:
    lm = _char_model(args.checkpoint)
    text = lm.sample(args.prime, length=args.length, temperature=args.temperature, seed=args.seed)
    sys.stdout.write(args.prime + text + "\n")
    return 0


def escape(text: str) -> str:
    """Backslashes, newlines, carriage returns and tabs as \\\\, \\n, \\r, \\t: one line per completion."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def complete_command(args: argparse.Namespace) -> int:
    lm = _char_model(args.checkpoint)
    for text, p in lm.complete(args.prefix, k=args.k, max_length=args.max_length, stop=args.stop, beam=args.beam):
        sys.stdout.write(f"{p:.6g}\t{escape(text)}\n")
    return 0


COMMANDS = {"train": train_command, "sample": sample_command, "complete": complete_command}


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        print(f"rnnext {args.command}: warning: {message}", file=sys.stderr, flush=True)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show  # one line naming the command, not a source location
            return COMMANDS[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError, RuntimeError) as e:
        print(f"rnnext {args.command}: error: {e}", file=sys.stderr)
        return 1
