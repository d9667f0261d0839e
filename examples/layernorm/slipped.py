"""A layer-norm backward pass with one slip: sigma is treated as a constant, so dR/dx loses the
xhat * mean(g * xhat) term. dR/dbeta and dR/dgamma are right; only grad_x must fail."""


def grad_beta(ctx):
    return ctx.dout.sum(axis=0)


def grad_gamma(ctx):
    return (ctx.dout * ctx.xhat).sum(axis=0)


def grad_x(ctx):
    g = ctx.dout * ctx.gamma[None, :]
    return (g - g.mean(axis=1, keepdims=True)) / ctx.sigma
