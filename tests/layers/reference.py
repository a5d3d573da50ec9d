"""Independent numpy versions of the paper's equations, for golden tests.

Written from the equations (paper Eq. 1-6 and the contract), not from the
layers: explicit cross-correlation loops, float64 throughout.
"""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def hard_sigmoid_tf2(x):
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


def relu(x):
    return np.maximum(x, 0.0)


def conv2d(x, kernel, bias=None, padding="same"):
    """Cross-correlation of (B, H, W, C) with (kh, kw, C, O), as Keras does.

    "same" pads (k − 1) // 2 before and the rest after (TF's rule).
    """
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    kh, kw = kernel.shape[:2]
    if padding == "same":
        top, left = (kh - 1) // 2, (kw - 1) // 2
        x = np.pad(
            x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0))
        )
    out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[3]))
    for i in range(kh):
        for j in range(kw):
            window = x[:, i : i + out_h, j : j + out_w, :]
            out += np.einsum("bhwc,co->bhwo", window, kernel[i, j])
    if bias is not None:
        out += np.asarray(bias, np.float64)
    return out


def conv_gru_step(x, h, kernel, recurrent_kernel, bias, gate, padding="same",
                  gate_fn=sigmoid):
    """One ConvGRU step; weights laid out [f, h] (minimal) or [z, r, h]."""
    n = h.shape[-1]
    if gate == "minimal":
        w_f, w_h = kernel[..., :n], kernel[..., n:]
        u_f, u_h = recurrent_kernel[..., :n], recurrent_kernel[..., n:]
        b_f, b_h = (None, None) if bias is None else (bias[:n], bias[n:])
        f = gate_fn(conv2d(x, w_f, b_f, padding) + conv2d(h, u_f))
        h_hat = np.tanh(conv2d(x, w_h, b_h, padding) + conv2d(f * h, u_h))
        return (1.0 - f) * h + f * h_hat
    w_z, w_r, w_h = kernel[..., :n], kernel[..., n : 2 * n], kernel[..., 2 * n :]
    u_z = recurrent_kernel[..., :n]
    u_r = recurrent_kernel[..., n : 2 * n]
    u_h = recurrent_kernel[..., 2 * n :]
    if bias is None:
        b_z = b_r = b_h = None
    else:
        b_z, b_r, b_h = bias[:n], bias[n : 2 * n], bias[2 * n :]
    z = gate_fn(conv2d(x, w_z, b_z, padding) + conv2d(h, u_z))
    r = gate_fn(conv2d(x, w_r, b_r, padding) + conv2d(h, u_r))
    h_hat = np.tanh(conv2d(x, w_h, b_h, padding) + conv2d(r * h, u_h))
    return (1.0 - z) * h + z * h_hat


def conv_gru(x, kernel, recurrent_kernel, bias, gate, filters, padding="same",
             gate_fn=sigmoid, go_backwards=False, h0=None):
    """Run over (B, T, H, W, C); returns (states in processing order, h_T)."""
    x = np.asarray(x, np.float64)
    kh, kw = kernel.shape[:2]
    b, steps, height, width = x.shape[:4]
    if padding == "valid":
        height, width = height - kh + 1, width - kw + 1
    h = np.zeros((b, height, width, filters)) if h0 is None else np.asarray(
        h0, np.float64
    )
    order = range(steps - 1, -1, -1) if go_backwards else range(steps)
    states = []
    for t in order:
        h = conv_gru_step(
            x[:, t], h, kernel, recurrent_kernel, bias, gate, padding, gate_fn
        )
        states.append(h)
    return np.stack(states, axis=1), h


def batch_norm(x, gamma, beta, moving_mean, moving_variance, epsilon=1e-3):
    return (x - moving_mean) / np.sqrt(moving_variance + epsilon) * gamma + beta


def max_pool_2x2(x):
    b, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    x = x[:, : 2 * h2, : 2 * w2]
    return x.reshape(b, h2, 2, w2, 2, c).max(axis=(2, 4))


def upsample_nearest_2x(x):
    return np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
