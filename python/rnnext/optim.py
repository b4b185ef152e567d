"""Optimizers working in place on a model's flat parameter and gradient buffers.

Every update is a handful of vectorised NumPy operations on the whole flat buffer
(``model.flat_params``, ``model.flat_grads``), never a Python loop over tensors. The update
rules and defaults are PyTorch's (``torch.optim``), so results can be compared directly.

``lr_schedule`` is an optional callable ``step -> factor``: before update number ``step``
(counted from 0) the learning rate used is ``lr * lr_schedule(step)``. Optimizer state
(``state_dict()``) holds the step count and the moment buffers, not the schedule itself.

``weight_decay`` (every optimizer, default 0) is PyTorch's L2 penalty: the update uses
``g + weight_decay * p`` in place of ``g`` (``flat_grads`` itself is left unchanged).
``AdamW`` decays the weights directly instead (decoupled: ``p *= 1 - lr * weight_decay``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional

import numpy as np

from ._checks import check_int

Schedule = Optional[Callable[[int], float]]


def _flat(model: Any) -> tuple:
    try:
        return model.flat_params, model.flat_grads
    except AttributeError as e:
        raise TypeError(f"model: expected an rnnext.RNN, got {type(model).__name__}") from e


def _check_float(name: str, value: Any, low: float, high: float = math.inf, *, low_open: bool = False) -> float:
    """A real number in [low, high) (or (low, high) with ``low_open``)."""
    kind = f"a float in {'(' if low_open else '['}{low}, {high})"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected {kind}, got {value!r}")
    v = float(value)
    if not (v > low if low_open else v >= low) or not v < high:
        raise ValueError(f"{name}: expected {kind}, got {value!r}")
    return v


def _check_lr(lr: Any) -> float:
    return _check_float("lr", lr, 0.0, low_open=True)


class Optimizer:
    """Base class: the flat buffers, the learning rate, its schedule and the step count."""

    # Names of the per-parameter state buffers (arrays shaped like flat_params).
    buffers: tuple = ()
    # Hyper-parameters saved in state_dict() and checked by load_state_dict().
    hyper: tuple = ("weight_decay",)
    decoupled = False  # True: weight_decay acts on p in _update (AdamW), not through the gradient

    def __init__(self, model: Any, lr: float, lr_schedule: Schedule = None, weight_decay: float = 0.0) -> None:
        self._p, self._g = _flat(model)
        self.model = model
        self.lr = _check_lr(lr)
        self.weight_decay = _check_float("weight_decay", weight_decay, 0.0)
        # g + weight_decay * p is formed here, allocated once.
        self._g_decayed = np.empty_like(self._p) if self.weight_decay and not self.decoupled else self._g
        if lr_schedule is not None and not callable(lr_schedule):
            raise TypeError(f"lr_schedule: expected a callable step -> factor, got {lr_schedule!r}")
        self.lr_schedule = lr_schedule
        self.step_count = 0
        self._tmp = np.empty_like(self._p)  # workspace: one allocation, reused every step
        # Per-parameter state, each buffer shaped like flat_params.
        self.state: Dict[str, np.ndarray] = {name: np.zeros_like(self._p) for name in self.buffers}

    def current_lr(self) -> float:
        """The learning rate the next ``step()`` uses."""
        if self.lr_schedule is None:
            return self.lr
        factor = float(self.lr_schedule(self.step_count))
        if not (math.isfinite(factor) and factor >= 0):
            raise ValueError(f"lr_schedule: expected a finite factor >= 0, got {factor!r} at step {self.step_count}")
        return self.lr * factor

    def step(self) -> None:
        """Update the parameters in place from the gradients."""
        lr = self.current_lr()
        self.step_count += 1
        self._update(self._p.dtype.type(lr))

    def _update(self, lr: Any) -> None:
        raise NotImplementedError

    def _grad(self) -> np.ndarray:
        """The gradient the update uses: ``g``, plus ``weight_decay * p`` (L2)."""
        if not self.weight_decay or self.decoupled:
            return self._g
        np.multiply(self._p, self._p.dtype.type(self.weight_decay), out=self._g_decayed)
        self._g_decayed += self._g
        return self._g_decayed

    def zero_grad(self) -> None:
        self.model.zero_grad()

    def state_dict(self) -> Dict[str, Any]:
        """Type, learning rate, hyper-parameters, step count and state buffers (copies)."""
        state: Dict[str, Any] = {"type": type(self).__name__, "lr": self.lr, "step_count": self.step_count}
        for name in self.hyper:
            state[name] = getattr(self, name)
        for name in self.buffers:
            state[name] = self.state[name].copy()
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore ``state_dict()``'s output; checks everything before changing anything."""
        if not isinstance(state, dict):
            raise TypeError(f"state: expected a dict from state_dict(), got {type(state).__name__}")
        if state.get("type") != type(self).__name__:
            raise ValueError(f"state: saved by a {state.get('type')} optimizer, loading into a {type(self).__name__}")
        if "weight_decay" not in state:  # saved before weight_decay existed, when it was 0
            state = dict(state, weight_decay=0.0)
        want = {"type", "lr", "step_count", *self.hyper, *self.buffers}
        if set(state) != want:
            raise ValueError(f"state: expected the keys {sorted(want)}, got {sorted(state)}")
        for name in self.hyper:
            if state[name] != getattr(self, name):
                raise ValueError(
                    f"state: {name} is {getattr(self, name)!r} here but {state[name]!r} in the saved state"
                )
        arrays = {}
        for name in self.buffers:
            a = np.asarray(state[name])
            if a.shape != self._p.shape:
                raise ValueError(f"state: {name} should have shape {self._p.shape}, got {a.shape}")
            if a.dtype.kind != "f":
                raise TypeError(f"state: {name} should hold floats, got dtype {a.dtype}")
            arrays[name] = a
        lr = _check_lr(state["lr"])
        step_count = state["step_count"]
        if isinstance(step_count, bool) or not isinstance(step_count, (int, np.integer)) or step_count < 0:
            raise ValueError(f"state: step_count should be an int >= 0, got {step_count!r}")
        self.lr, self.step_count = lr, int(step_count)
        for name, a in arrays.items():
            self.state[name][...] = a

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.hyper)
        return f"{type(self).__name__}(lr={self.lr!r}" + (f", {hp}" if hp else "") + ")"


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``::

        buf = momentum * buf + g            (buf = g at the first step)
        p  -= lr * buf                      (lr * (g + momentum * buf) with nesterov)
    """

    hyper = ("momentum", "nesterov", "weight_decay")

    def __init__(
        self,
        model: Any,
        lr: float,
        momentum: float = 0.0,
        *,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        lr_schedule: Schedule = None,
    ) -> None:
        self.momentum = _check_float("momentum", momentum, 0.0, 1.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov: expected a bool, got {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov: needs momentum > 0, got momentum=0")
        self.nesterov = bool(nesterov)
        self.buffers = ("momentum_buffer",) if self.momentum > 0 else ()
        super().__init__(model, lr, lr_schedule, weight_decay)

    def _update(self, lr: Any) -> None:
        p, g = self._p, self._grad()
        if self.momentum == 0:
            p -= np.multiply(g, lr, out=self._tmp)
            return
        buf = self.state["momentum_buffer"]
        if self.step_count == 1:
            buf[...] = g
        else:
            buf *= buf.dtype.type(self.momentum)
            buf += g
        if self.nesterov:
            np.multiply(buf, buf.dtype.type(self.momentum), out=self._tmp)
            self._tmp += g
            d = self._tmp
        else:
            d = buf
        p -= np.multiply(d, lr, out=self._tmp)


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011), the optimizer of the classic character RNN, as
    ``torch.optim.Adagrad``::

        sum += g^2
        p   -= lr * g / (sqrt(sum) + eps)
    """

    buffers = ("sum",)
    hyper = ("eps", "initial_accumulator_value", "weight_decay")

    def __init__(
        self,
        model: Any,
        lr: float = 0.01,
        *,
        eps: float = 1e-10,
        initial_accumulator_value: float = 0.0,
        weight_decay: float = 0.0,
        lr_schedule: Schedule = None,
    ) -> None:
        self.eps = _check_float("eps", eps, 0.0)
        self.initial_accumulator_value = _check_float("initial_accumulator_value", initial_accumulator_value, 0.0)
        super().__init__(model, lr, lr_schedule, weight_decay)
        self.state["sum"][...] = self.initial_accumulator_value

    def _update(self, lr: Any) -> None:
        g, t, acc = self._grad(), self._tmp, self.state["sum"]
        acc += np.multiply(g, g, out=t)
        np.sqrt(acc, out=t)
        t += t.dtype.type(self.eps)
        np.divide(g, t, out=t)
        t *= lr
        self._p -= t


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton 2012), as ``torch.optim.RMSprop`` (not centered)::

        v   = alpha * v + (1 - alpha) * g^2
        buf = momentum * buf + g / (sqrt(v) + eps)     (buf = the step when momentum = 0)
        p  -= lr * buf
    """

    hyper = ("alpha", "eps", "momentum", "weight_decay")

    def __init__(
        self,
        model: Any,
        lr: float = 0.01,
        alpha: float = 0.99,
        *,
        eps: float = 1e-8,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        lr_schedule: Schedule = None,
    ) -> None:
        self.alpha = _check_float("alpha", alpha, 0.0, 1.0)
        self.eps = _check_float("eps", eps, 0.0)
        self.momentum = _check_float("momentum", momentum, 0.0, 1.0)
        self.buffers = ("square_avg", "momentum_buffer") if self.momentum > 0 else ("square_avg",)
        super().__init__(model, lr, lr_schedule, weight_decay)

    def _update(self, lr: Any) -> None:
        g, t, v = self._grad(), self._tmp, self.state["square_avg"]
        dt = v.dtype.type
        v *= dt(self.alpha)
        np.multiply(g, g, out=t)
        t *= dt(1.0 - self.alpha)
        v += t
        np.sqrt(v, out=t)
        t += dt(self.eps)
        np.divide(g, t, out=t)
        if self.momentum > 0:
            buf = self.state["momentum_buffer"]
            buf *= dt(self.momentum)
            buf += t
            np.multiply(buf, lr, out=t)
        else:
            t *= lr
        self._p -= t


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), as ``torch.optim.Adam``::

        m  = beta1 * m + (1 - beta1) * g
        v  = beta2 * v + (1 - beta2) * g^2
        p -= lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)
    """

    buffers = ("exp_avg", "exp_avg_sq")
    hyper = ("betas", "eps", "weight_decay")

    def __init__(
        self,
        model: Any,
        lr: float = 1e-3,
        betas: tuple = (0.9, 0.999),
        *,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        lr_schedule: Schedule = None,
    ) -> None:
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        self.betas = [_check_float("betas[0]", betas[0], 0.0, 1.0), _check_float("betas[1]", betas[1], 0.0, 1.0)]
        self.eps = _check_float("eps", eps, 0.0)
        super().__init__(model, lr, lr_schedule, weight_decay)

    def _update(self, lr: Any) -> None:
        g, t, m, v = self._grad(), self._tmp, self.state["exp_avg"], self.state["exp_avg_sq"]
        dt = m.dtype.type
        b1, b2 = self.betas
        m *= dt(b1)
        m += np.multiply(g, dt(1.0 - b1), out=t)
        v *= dt(b2)
        np.multiply(g, g, out=t)
        t *= dt(1.0 - b2)
        v += t
        bias1 = 1.0 - b1**self.step_count
        bias2 = 1.0 - b2**self.step_count
        np.sqrt(v, out=t)
        t *= dt(1.0 / math.sqrt(bias2))
        t += dt(self.eps)
        np.divide(m, t, out=t)
        t *= dt(float(lr) / bias1)
        self._p -= t


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as ``torch.optim.AdamW``::

        p *= 1 - lr * weight_decay          (before the Adam step, which sees g alone)

    ``weight_decay`` defaults to PyTorch's 0.01.
    """

    decoupled = True

    def __init__(
        self,
        model: Any,
        lr: float = 1e-3,
        betas: tuple = (0.9, 0.999),
        *,
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        lr_schedule: Schedule = None,
    ) -> None:
        super().__init__(model, lr, betas, eps=eps, weight_decay=weight_decay, lr_schedule=lr_schedule)

    def _update(self, lr: Any) -> None:
        if self.weight_decay:
            self._p *= self._p.dtype.type(1.0 - float(lr) * self.weight_decay)
        super()._update(lr)


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}


def clip_grad_norm(model: Any, max_norm: float, *, error_if_nonfinite: bool = False) -> float:
    """Scale the gradients so their global L2 norm is at most ``max_norm``.

    Returns the norm before clipping. A NaN or inf norm leaves the gradients unchanged and
    is returned as is, or raises ValueError with ``error_if_nonfinite=True``.
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float, np.floating)) or not max_norm > 0:
        raise ValueError(f"max_norm: expected a positive float, got {max_norm!r}")
    _, g = _flat(model)
    # einsum accumulates in float64 without copying g and without BLAS threads (np.dot of
    # float64 copies: 6x slower here, and its threads spin on the cores the engine uses)
    norm = float(np.sqrt(np.einsum("i,i->", g, g, dtype=np.float64)))
    if not np.isfinite(norm):
        if error_if_nonfinite:
            raise ValueError(f"clip_grad_norm: the gradient norm is {norm}, not finite")
        return norm
    if norm > max_norm:
        g *= g.dtype.type(max_norm / (norm + 1e-6))
    return norm


def cosine_schedule(total_steps: int, warmup_steps: int = 0, final_factor: float = 0.0) -> Callable[[int], float]:
    """A factor rising linearly over ``warmup_steps``, then following half a cosine from 1
    down to ``final_factor`` at ``total_steps`` (and staying there)."""
    total_steps = check_int("total_steps", total_steps, 1)
    warmup_steps = check_int("warmup_steps", warmup_steps, 0)
    final_factor = _check_float("final_factor", final_factor, 0.0)
    if final_factor > 1:
        raise ValueError(f"final_factor: expected a float in [0, 1], got {final_factor!r}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        frac = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * frac))

    return factor
