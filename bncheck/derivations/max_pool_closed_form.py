"""max-pool, closed form: each window's upstream gradient routed to its largest entry, accumulated.

For window (u, v) of example n and channel c, with (i*, j*) the position of its largest entry,

    ∂R/∂x[n, c, s·u + i*, s·v + j*]  +=  dout[n, c, u, v]

summed over every window (overlapping windows, s < k, can share their maximum), and zero for every
other entry. Ties are not broken with care (np.argmax takes the first): the sweep redraws any draw
whose windows come near a tie (the model's `gap` field), where the derivative is only a convention.
"""

import numpy as np


def grad_x(ctx):
    x, dout = np.asarray(ctx.x), np.asarray(ctx.dout)
    k, s = ctx.pool, ctx.stride
    N, C, Ho, Wo = dout.shape
    # windows[n, c, u, v, i·k + j] = x[n, c, s·u + i, s·v + j]
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s][:, :, :Ho, :Wo]
    best = windows.reshape(N, C, Ho, Wo, k * k).argmax(axis=-1)
    n, c, u, v = np.indices((N, C, Ho, Wo))
    dx = np.zeros(x.shape, dtype=np.result_type(x, dout))
    np.add.at(dx, (n, c, s * u + best // k, s * v + best % k), dout)
    return dx
