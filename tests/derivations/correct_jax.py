"""Correct derivation of all ten bn-mlp functions in jax.numpy: einsum gradients, Kronecker-product Jacobians (expected to pass)."""
import jax.numpy as jnp

EXPECTED_FAIL = set()
EXPECTED_DIAGNOSIS = {}
SETTINGS = {}

# Notation: n = N - ddof, c = gamma/sigma, h = vec(Hhat), 1 = ones(N), C = I_N - 11'/N.
#   Z = dR/dB = -2/N (resid G2') .* dA
#   vec(B) = (I_p2 (x) 1) beta + diag(h) (I_p2 (x) 1) gamma + ...
#   d vec(B) = M d vec(H),  M = diag(c) (x) C  -  diag(h) (diag(c)/n (x) 11') diag(h)
#   d vec(H) = (I_p2 (x) X) d vec(G1)   =>   jac_B_G1 = M (I_p2 (x) X)
#   grad_G1  = X' dH, dH[i,j] = c_j (Zc[i,j] - Hhat[i,j] sum_m Hhat[m,j] Z[m,j] / n), Zc = C Z


def _Z(ctx):
    return -2.0 / ctx.N * jnp.einsum("ik,jk,ij->ij", ctx.resid, ctx.G2, ctx.dA)


def grad_beta(ctx):
    return jnp.einsum("ij->j", _Z(ctx))


def grad_gamma(ctx):
    return jnp.einsum("ij,ij->j", _Z(ctx), ctx.Hhat)


def grad_G1(ctx):
    Z = _Z(ctx)
    Zc = Z - jnp.mean(Z, axis=0, keepdims=True)
    proj = jnp.einsum("mj,mj->j", ctx.Hhat, Z) / (ctx.N - ctx.ddof)
    dH = (ctx.gamma / ctx.sigma) * (Zc - ctx.Hhat * proj)
    return jnp.einsum("ia,ij->aj", ctx.X, dH)


def grad_G2(ctx):
    return -2.0 / ctx.N * jnp.einsum("ij,ik->jk", ctx.A, ctx.resid)


def _blocks(ctx):
    N, p2 = ctx.Hhat.shape
    return N, p2, jnp.eye(p2), jnp.ones((N, 1))


def jac_B_beta(ctx):  # I_p2 (x) 1
    N, p2, I, one = _blocks(ctx)
    return jnp.kron(I, one)


def jac_B_gamma(ctx):  # diag(vec Hhat) (I_p2 (x) 1)
    N, p2, I, one = _blocks(ctx)
    h = jnp.reshape(jnp.transpose(ctx.Hhat), (-1,))
    return h[:, None] * jnp.kron(I, one)


def jac_B_G1(ctx):  # M (I_p2 (x) X)
    N, p2, I, one = _blocks(ctx)
    h = jnp.reshape(jnp.transpose(ctx.Hhat), (-1,))
    c = jnp.asarray(ctx.gamma) / jnp.asarray(ctx.sigma)
    C = jnp.eye(N) - jnp.ones((N, N)) / N
    M = jnp.kron(jnp.diag(c), C) - h[:, None] * jnp.kron(jnp.diag(c) / (ctx.N - ctx.ddof), one @ one.T) * h[None, :]
    return M @ jnp.kron(I, ctx.X)


def jvp_B_beta(ctx, V):  # 1 V'
    return jnp.ones((ctx.Hhat.shape[0], 1)) * jnp.asarray(V)[None, :]


def jvp_B_gamma(ctx, V):  # Hhat diag(V)
    return jnp.einsum("ij,j->ij", ctx.Hhat, V)


def jvp_B_G1(ctx, V):  # unvec(M vec(X V)) without forming M
    dH = jnp.einsum("ia,aj->ij", ctx.X, V)
    proj = jnp.einsum("mj,mj->j", ctx.Hhat, dH) / (ctx.N - ctx.ddof)
    return (ctx.gamma / ctx.sigma) * (dH - jnp.mean(dH, axis=0) - ctx.Hhat * proj)
