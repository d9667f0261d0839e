"""dR/dZ = (P - t) / N, so dR/dW = x^T (P - t) / N and dR/dx = (P - t) W^T / N."""


def grad_W(ctx):
    return ctx.x.T @ (ctx.P - ctx.t) / ctx.N


def grad_x(ctx):
    return (ctx.P - ctx.t) @ ctx.W.T / ctx.N
