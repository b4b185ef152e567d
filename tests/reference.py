"""A plain NumPy reference of the model, written step by step from the notes' equations.

Independent of the engine: loops over layers, directions, steps and sequences; used to
check forward semantics (lengths, directions, embeddings) and, through finite
differences, the engine's gradients.
"""

import numpy as np

ACTS = {
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
}


def suffix(layer, direction):
    return (f"_l{layer}" if layer else "") + ("_reverse" if direction else "")


def output_activation(z, kind):
    if kind in (None, "none"):
        return z
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def forward(params, cfg, x, h0=None, lengths=None):
    """x: (T, B, I) floats or (T, B) ids; h0: (L*D, B, H). Returns y (T, B, .), h_n (L*D, B, H)."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    L, H = cfg["num_layers"], cfg["hidden_size"]
    D = 2 if cfg["bidirectional"] else 1
    f = ACTS[cfg["nonlinearity"]]
    inp = p["E"][np.asarray(x)] if cfg.get("vocab_size") else np.asarray(x, dtype=np.float64)
    T, B = inp.shape[:2]
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    if h0 is None:
        h0 = np.repeat(p["h0"][:, None, :], B, axis=1) if "h0" in p else np.zeros((L * D, B, H))
    h_n = np.zeros((L * D, B, H))
    for l in range(L):
        out = np.zeros((T, B, D * H))
        for d in range(D):
            sfx = suffix(l, d)
            for b in range(B):
                s = h0[l * D + d, b].astype(np.float64)
                steps = range(lengths[b])
                for t in (reversed(steps) if d else steps):
                    s = f(inp[t, b] @ p["W_x" + sfx] + s @ p["W_h" + sfx] + p["b_h" + sfx])
                    out[t, b, d * H : (d + 1) * H] = s
                h_n[l * D + d, b] = s
        inp = out
    if cfg.get("output_size"):
        y = output_activation(inp @ p["W_y"] + p["b_y"], cfg.get("output_activation"))
        for b in range(B):
            y[lengths[b] :, b] = 0.0
        return y, h_n
    return inp, h_n
