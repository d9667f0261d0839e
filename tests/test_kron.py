"""Check the Kronecker-product helpers against jax.jacfwd and known identities."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bncheck.kron import (
    commutation_matrix,
    jac_kron_A,
    jac_kron_B,
    unvec,
    vec,
)

jax.config.update("jax_enable_x64", True)

TOL = 1e-12

# (A shape, B shape): scalars, row and column vectors, square and non-square.
KRON_SHAPES = [
    ((1, 1), (1, 1)),
    ((1, 1), (3, 2)),
    ((2, 3), (1, 1)),
    ((1, 4), (1, 1)),
    ((1, 3), (5, 1)),
    ((3, 1), (4, 1)),
    ((1, 3), (1, 2)),
    ((3, 1), (1, 2)),
    ((2, 1), (1, 3)),
    ((1, 2), (3, 1)),
    ((2, 2), (2, 2)),
    ((2, 3), (4, 5)),
    ((3, 2), (5, 4)),
    ((4, 1), (2, 3)),
    ((1, 4), (3, 2)),
    ((2, 3), (3, 2)),
    ((3, 3), (1, 4)),
    ((5, 2), (2, 1)),
    ((1, 5), (4, 4)),
    ((3, 4), (2, 2)),
]


def _vec_kron(A, B):
    return jnp.kron(A, B).T.reshape(-1)


def _colmajor_jac(J):
    """(L, r, c) jacfwd output -> (L, rc) with columns ordered by vec."""
    L, r, c = J.shape
    return np.asarray(J).transpose(0, 2, 1).reshape(L, r * c)


def _jax_jacs(A, B):
    JA, JB = jax.jacfwd(_vec_kron, argnums=(0, 1))(jnp.asarray(A), jnp.asarray(B))
    return _colmajor_jac(JA), _colmajor_jac(JB)


def _random_pair(shape_a, shape_b, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape_a), rng.standard_normal(shape_b)


@pytest.mark.parametrize("idx", range(len(KRON_SHAPES)))
def test_kron_jacobians_match_jacfwd(idx):
    shape_a, shape_b = KRON_SHAPES[idx]
    A, B = _random_pair(shape_a, shape_b, seed=1000 + idx)
    (m, n), (p, q) = shape_a, shape_b
    JA_ref, JB_ref = _jax_jacs(A, B)

    JA, JB = jac_kron_A(A, B), jac_kron_B(A, B)

    assert JA.shape == (m * p * n * q, m * n)
    assert JB.shape == (m * p * n * q, p * q)
    np.testing.assert_allclose(JA, JA_ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(JB, JB_ref, rtol=0, atol=TOL)


@pytest.mark.parametrize("p,N", [(1, 1), (1, 4), (3, 1), (3, 5), (6, 2)])
def test_beta_kron_ones_is_identity_kron_ones(p, N):
    beta = np.random.default_rng(p * 10 + N).standard_normal(p)
    ones = np.ones((N, 1))
    expected = np.kron(np.eye(p), ones)

    # Row form βᵀ ⊗ 1_N (A = βᵀ) and column form β ⊗ 1_N (A = β).
    np.testing.assert_array_equal(jac_kron_A(beta[None, :], ones), expected)
    np.testing.assert_array_equal(jac_kron_A(beta[:, None], ones), expected)


def test_one_dimensional_input_is_rejected():
    with pytest.raises(ValueError):
        jac_kron_A(np.ones(3), np.ones((2, 1)))
    with pytest.raises(ValueError):
        jac_kron_B(np.ones((2, 1)), np.ones(3))


COMM_SHAPES = list(itertools.product([1, 2, 3, 5], [1, 2, 4]))


@pytest.mark.parametrize("m,n", COMM_SHAPES)
def test_commutation_matrix(m, n):
    A = np.random.default_rng(7 * m + n).standard_normal((m, n))
    K = commutation_matrix(m, n)

    np.testing.assert_array_equal(K @ vec(A), vec(A.T))
    np.testing.assert_array_equal(K.T, commutation_matrix(n, m))
    np.testing.assert_array_equal(K.T @ K, np.eye(m * n))
    # Permutation matrix: 0/1 entries, exactly one 1 per row and column.
    assert set(np.unique(K)) <= {0.0, 1.0}
    np.testing.assert_array_equal(K.sum(axis=0), np.ones(m * n))
    np.testing.assert_array_equal(K.sum(axis=1), np.ones(m * n))


@pytest.mark.parametrize("seed", range(10))
def test_vec_of_triple_product(seed):
    rng = np.random.default_rng(seed)
    a, b, c, d = rng.integers(1, 6, size=4)
    A = rng.standard_normal((a, b))
    X = rng.standard_normal((b, c))
    B = rng.standard_normal((c, d))

    np.testing.assert_allclose(
        vec(A @ X @ B), np.kron(B.T, A) @ vec(X), rtol=0, atol=TOL
    )
    np.testing.assert_array_equal(unvec(vec(X), X.shape), X)


def test_vec_is_column_major():
    M = np.array([[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(vec(M), [1, 4, 2, 5, 3, 6])
    np.testing.assert_array_equal(unvec(vec(M), M.shape), M)


def test_rule_without_commutation_matrix_fails():
    """Dropping I_n ⊗ K_{q,m} ⊗ I_p must be caught, so the check can fail."""
    A, B = _random_pair((2, 3), (4, 5), seed=99)
    JA_ref, JB_ref = _jax_jacs(A, B)
    m, n = A.shape
    p, q = B.shape

    wrong_A = np.kron(np.eye(m * n), vec(B)[:, None])
    wrong_B = np.kron(vec(A)[:, None], np.eye(p * q))

    assert np.max(np.abs(wrong_A - JA_ref)) > 1e-3
    assert np.max(np.abs(wrong_B - JB_ref)) > 1e-3


def vec_jnp(M):
    return M.T.reshape(-1)


@pytest.mark.parametrize("seed", range(6))
def test_identities_are_the_jacobians_jax_finds(seed):
    """vec(AXB) = (Bᵀ ⊗ A) vec(X) and K vec(A) = vec(Aᵀ), read as derivatives: jax.jacfwd of
    X ↦ vec(AXB) is Bᵀ ⊗ A and of A ↦ vec(Aᵀ) is K_{m,n}, at random shapes."""
    rng = np.random.default_rng(100 + seed)
    a, b, c, d = (int(s) for s in rng.integers(1, 6, size=4))
    A, X, B = rng.standard_normal((a, b)), rng.standard_normal((b, c)), rng.standard_normal((c, d))

    J_triple = jax.jacfwd(lambda X: vec_jnp(A @ X @ B))(jnp.asarray(X))
    J_transpose = jax.jacfwd(lambda A: vec_jnp(A.T))(jnp.asarray(A))

    np.testing.assert_allclose(_colmajor_jac(J_triple), np.kron(B.T, A), rtol=0, atol=TOL)
    np.testing.assert_array_equal(_colmajor_jac(J_transpose), commutation_matrix(a, b))

