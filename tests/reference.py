"""A plain NumPy reference of the model, written step by step from the notes' equations.

Independent of the engine: loops over layers, directions, steps and sequences, in float64;
used to check forward semantics (lengths, directions, embeddings), the engine's gradients
(BPTT written out by hand, `backward`), its kernels and thread counts, `step()`, and the
C++ softmax cross-entropy (`softmax_cross_entropy`).
"""

import numpy as np

ACTS = {
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
}

# f'(a) from the activation's value s = f(a)
ACT_GRADS = {
    "tanh": lambda s: 1.0 - s * s,
    "relu": lambda s: (s > 0).astype(np.float64),
    "sigmoid": lambda s: s * (1.0 - s),
}


def suffix(layer, direction):
    """rnnext's parameter-name suffix of a cell: W_h, W_h_reverse, W_h_l1, W_h_l1_reverse."""
    return (f"_l{layer}" if layer else "") + ("_reverse" if direction else "")


def torch_suffix(layer, direction):
    """PyTorch's suffix of the same cell: weight_hh_l0, weight_hh_l0_reverse, ..."""
    return f"_l{layer}" + ("_reverse" if direction else "")


def cells(num_layers, bidirectional):
    """(layer, direction) of every cell, in the order of h0 / h_n."""
    return [(l, d) for l in range(num_layers) for d in range(2 if bidirectional else 1)]


def output_activation(z, kind):
    if kind in (None, "none"):
        return z
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _run(p, cfg, x, h0, lengths):
    """Forward keeping what backward needs: each layer's input and output states."""
    L, H = cfg["num_layers"], cfg["hidden_size"]
    D = 2 if cfg["bidirectional"] else 1
    f = ACTS[cfg["nonlinearity"]]
    inp = p["E"][np.asarray(x)] if cfg.get("vocab_size") else np.asarray(x, dtype=np.float64)
    T, B = inp.shape[:2]
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    if h0 is None:
        h0 = np.repeat(p["h0"][:, None, :], B, axis=1) if "h0" in p else np.zeros((L * D, B, H))
    h0 = np.asarray(h0, dtype=np.float64).reshape(L * D, B, H)
    h_n = np.zeros((L * D, B, H))
    inputs, outputs = [], []
    for l in range(L):
        out = np.zeros((T, B, D * H))
        for d in range(D):
            sfx = suffix(l, d)
            for b in range(B):
                s = h0[l * D + d, b].copy()
                steps = range(lengths[b])
                for t in reversed(steps) if d else steps:
                    s = f(inp[t, b] @ p["W_x" + sfx] + s @ p["W_h" + sfx] + p["b_h" + sfx])
                    out[t, b, d * H : (d + 1) * H] = s
                h_n[l * D + d, b] = s
        inputs.append(inp)
        outputs.append(out)
        inp = out
    y = inp
    if cfg.get("output_size"):
        y = output_activation(inp @ p["W_y"] + p["b_y"], cfg.get("output_activation"))
        for b in range(B):
            y[lengths[b] :, b] = 0.0
    return dict(y=y, h_n=h_n, h0=h0, lengths=lengths, inputs=inputs, outputs=outputs)


def _float64(params):
    return {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}


def forward(params, cfg, x, h0=None, lengths=None):
    """x: (T, B, I) floats or (T, B) ids; h0: (L*D, B, H). Returns y (T, B, .), h_n (L*D, B, H)."""
    r = _run(_float64(params), cfg, x, h0, lengths)
    return r["y"], r["h_n"]


def backward(params, cfg, x, gy, gh=None, h0=None, lengths=None):
    """BPTT of L = <gy, y> + <gh, h_n> by hand. Returns (grads by parameter name, dx, dh0):
    dx is None for token ids; dh0 (L*D, B, H) is the gradient of the initial state used."""
    p = _float64(params)
    r = _run(p, cfg, x, h0, lengths)
    L, H = cfg["num_layers"], cfg["hidden_size"]
    D = 2 if cfg["bidirectional"] else 1
    df = ACT_GRADS[cfg["nonlinearity"]]
    lengths = r["lengths"]
    T, B = r["y"].shape[:2]
    valid = (np.arange(T)[:, None] < lengths[None, :])[..., None]  # (T, B, 1): steps with outputs
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    g = np.asarray(gy, dtype=np.float64) * valid
    top = r["outputs"][-1]
    if cfg.get("output_size"):
        y, kind = r["y"], cfg.get("output_activation")
        if kind == "sigmoid":
            g = g * y * (1.0 - y)
        elif kind == "softmax":
            g = y * (g - np.sum(g * y, axis=-1, keepdims=True))
        grads["W_y"] = np.einsum("tbh,tbo->ho", top, g)
        grads["b_y"] = g.sum(axis=(0, 1))
        g = (g @ p["W_y"].T) * valid
    gh = np.zeros((L * D, B, H)) if gh is None else np.asarray(gh, dtype=np.float64).reshape(L * D, B, H)
    dh0 = np.zeros((L * D, B, H))
    for l in reversed(range(L)):
        inp, out = r["inputs"][l], r["outputs"][l]
        din = np.zeros_like(inp)
        for d in range(D):
            sfx, k = suffix(l, d), l * D + d
            W_x, W_h = p["W_x" + sfx], p["W_h" + sfx]
            for b in range(B):
                carry = gh[k, b].copy()  # dL/ds at the last step processed (h_n)
                steps = list(range(lengths[b]))
                order = steps[::-1] if d else steps
                for i in reversed(range(len(order))):
                    t = order[i]
                    s = out[t, b, d * H : (d + 1) * H]
                    s_prev = out[order[i - 1], b, d * H : (d + 1) * H] if i else r["h0"][k, b]
                    da = (g[t, b, d * H : (d + 1) * H] + carry) * df(s)
                    grads["W_x" + sfx] += np.outer(inp[t, b], da)
                    grads["W_h" + sfx] += np.outer(s_prev, da)
                    grads["b_h" + sfx] += da
                    din[t, b] += da @ W_x.T
                    carry = da @ W_h.T
                dh0[k, b] = carry
        g = din
    dx = None
    if cfg.get("vocab_size"):
        np.add.at(grads["E"], np.asarray(x), g)
    else:
        dx = g
    if "h0" in p and h0 is None:
        grads["h0"] = dh0.sum(axis=1)
    return grads, dx, dh0


def softmax_cross_entropy(logits, targets, mask=None, reduction="sum"):
    """-sum log softmax(z)[target] (weighted by mask; "mean": over masked-in steps) and its
    gradient softmax(z) - onehot(target), from the definitions."""
    z = np.asarray(logits, dtype=np.float64)
    t = np.asarray(targets)
    m = np.ones(z.shape[:-1]) if mask is None else np.asarray(mask, dtype=np.float64)
    shifted = z - z.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    onehot = np.zeros_like(z)
    np.put_along_axis(onehot, np.where(m > 0, t, 0)[..., None].astype(np.int64), 1.0, axis=-1)
    loss = -np.sum(m * np.sum(onehot * logp, axis=-1))
    grad = (np.exp(logp) - onehot) * m[..., None]
    if reduction == "mean" and m.sum() > 0:
        loss, grad = loss / m.sum(), grad / m.sum()
    return float(loss), grad
