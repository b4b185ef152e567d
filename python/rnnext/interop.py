"""Conversion to and from PyTorch's ``nn.RNN`` (+ ``nn.Linear``). torch is imported lazily."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("this needs PyTorch: pip install torch") from e
    return torch


def _suffix(layer: int, direction: int) -> str:
    return (f"_l{layer}" if layer else "") + ("_reverse" if direction else "")


def from_torch(cls: Any, rnn_module: Any, linear: Any = None, **kwargs: Any) -> Any:
    torch = _torch()
    if not isinstance(rnn_module, torch.nn.RNN):
        raise TypeError(f"rnn_module: expected a torch.nn.RNN, got {type(rnn_module).__name__}")
    if linear is not None and not isinstance(linear, torch.nn.Linear):
        raise TypeError(f"linear: expected a torch.nn.Linear or None, got {type(linear).__name__}")
    if rnn_module.batch_first:
        raise ValueError("rnn_module: batch_first=True is not supported; rnnext is time-major (T, B, .)")
    if getattr(rnn_module, "proj_size", 0):
        raise ValueError("rnn_module: proj_size is not supported by nn.RNN conversion")
    D = 2 if rnn_module.bidirectional else 1
    H = rnn_module.hidden_size
    if linear is not None and linear.in_features != D * H:
        raise ValueError(
            f"linear: expected in_features = {D * H} (directions * hidden_size), got {linear.in_features}"
        )
    dtype = rnn_module.weight_ih_l0.dtype
    model = cls(
        rnn_module.input_size,
        H,
        linear.out_features if linear is not None else None,
        nonlinearity=rnn_module.nonlinearity,
        num_layers=rnn_module.num_layers,
        bidirectional=rnn_module.bidirectional,
        dropout=float(rnn_module.dropout),
        dtype=kwargs.pop("dtype", "float64" if dtype == torch.float64 else "float32"),
        **kwargs,
    )
    sd = {k: v.detach().cpu().double().numpy() for k, v in rnn_module.state_dict().items()}
    for l in range(rnn_module.num_layers):
        for d in range(D):
            t, r = f"_l{l}" + ("_reverse" if d else ""), _suffix(l, d)
            model.params["W_x" + r][...] = sd["weight_ih" + t].T
            model.params["W_h" + r][...] = sd["weight_hh" + t].T
            b = np.zeros(H)
            if rnn_module.bias:
                b = sd["bias_ih" + t] + sd["bias_hh" + t]
            model.params["b_h" + r][...] = b
    if linear is not None:
        model.params["W_y"][...] = linear.weight.detach().cpu().double().numpy().T
        bias = linear.bias
        model.params["b_y"][...] = 0.0 if bias is None else bias.detach().cpu().double().numpy()
    return model


def to_torch(model: Any) -> Any:
    torch = _torch()
    if model.vocab_size:
        raise ValueError("to_torch: a model with a vocabulary has no nn.RNN equivalent (use E separately)")
    if model.nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"to_torch: nn.RNN supports tanh and relu, got nonlinearity={model.nonlinearity!r}")
    tdtype = torch.float64 if model.dtype == np.float64 else torch.float32
    rnn = torch.nn.RNN(
        model.input_size,
        model.hidden_size,
        num_layers=model.num_layers,
        nonlinearity=model.nonlinearity,
        bidirectional=model.bidirectional,
        dropout=model.config["dropout"],
    ).to(tdtype)
    linear: Optional[Any] = None
    with torch.no_grad():
        for l in range(model.num_layers):
            for d in range(model.num_directions):
                t, r = f"_l{l}" + ("_reverse" if d else ""), _suffix(l, d)
                getattr(rnn, "weight_ih" + t).copy_(torch.from_numpy(model.params["W_x" + r].T.copy()))
                getattr(rnn, "weight_hh" + t).copy_(torch.from_numpy(model.params["W_h" + r].T.copy()))
                getattr(rnn, "bias_ih" + t).copy_(torch.from_numpy(model.params["b_h" + r].copy()))
                getattr(rnn, "bias_hh" + t).zero_()
        if model.output_size:
            linear = torch.nn.Linear(model.num_directions * model.hidden_size, model.output_size).to(tdtype)
            linear.weight.copy_(torch.from_numpy(model.params["W_y"].T.copy()))
            linear.bias.copy_(torch.from_numpy(model.params["b_y"].copy()))
    return rnn, linear
