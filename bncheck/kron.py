"""Kronecker-product matrix calculus helpers (pure NumPy).

Convention: column-major vec.  ``vec(M)`` stacks the columns of ``M``
(``M.T.reshape(-1)``), so that

    vec(A X B) = (Bᵀ ⊗ A) vec(X).

Jacobians are laid out as ∂vec(F)/∂vec(X)ᵀ: rows index vec(F), columns
index vec(X).

The derivative of the Kronecker product follows Magnus & Neudecker,
*Matrix Differential Calculus with Applications in Statistics and
Econometrics*, Thm 3.10: for A (m×n) and B (p×q),

    vec(A ⊗ B) = (I_n ⊗ K_{q,m} ⊗ I_p)(vec A ⊗ vec B),

and since vec A ⊗ vec B = (I_{mn} ⊗ vec B) vec A = (vec A ⊗ I_{pq}) vec B,
the map is bilinear and its two partial Jacobians follow directly.

Note: the seed question's β ⊗ 1_N is the case A = βᵀ (1×p), B = 1_N
(N×1).  Then m = q = 1, K_{1,1} = 1, the permutation is the identity and
the rule reduces to ∂vec(βᵀ ⊗ 1_N)/∂βᵀ = I_p ⊗ 1_N.
"""

from __future__ import annotations

import numpy as np


def vec(M: np.ndarray) -> np.ndarray:
    """vec(M): the columns of M stacked into one vector (column-major)."""
    M = np.asarray(M)
    return M.T.reshape(-1)


def unvec(v: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of vec: the m×n matrix M with vec(M) = v, shape = (m, n)."""
    m, n = shape
    return np.asarray(v).reshape(n, m).T


def commutation_matrix(m: int, n: int) -> np.ndarray:
    """K_{m,n}, the mn×mn permutation with K_{m,n} vec(A) = vec(Aᵀ), A m×n.

    A[i, j] sits at vec(A)[i + j m] and at vec(Aᵀ)[j + i n].
    """
    i, j = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    K = np.zeros((m * n, m * n))
    K[(j + i * n).ravel(), (i + j * m).ravel()] = 1.0
    return K


def _kron_permutation(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """I_n ⊗ K_{q,m} ⊗ I_p, which maps vec A ⊗ vec B to vec(A ⊗ B)."""
    (m, n), (p, q) = A.shape, B.shape
    return np.kron(np.kron(np.eye(n), commutation_matrix(q, m)), np.eye(p))


def jac_kron_A(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """∂vec(A ⊗ B)/∂vec(A)ᵀ = (I_n ⊗ K_{q,m} ⊗ I_p)(I_{mn} ⊗ vec B).

    A is m×n, B is p×q (both 2-D: a 1-D array has no row/column
    orientation, so it is rejected rather than guessed); the result is
    (mpnq, mn).
    """
    A, B = np.asarray(A), np.asarray(B)
    m, n = A.shape
    return _kron_permutation(A, B) @ np.kron(np.eye(m * n), vec(B)[:, None])


def jac_kron_B(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """∂vec(A ⊗ B)/∂vec(B)ᵀ = (I_n ⊗ K_{q,m} ⊗ I_p)(vec A ⊗ I_{pq}).

    A is m×n, B is p×q (both 2-D); the result is (mpnq, pq).
    """
    A, B = np.asarray(A), np.asarray(B)
    p, q = B.shape
    return _kron_permutation(A, B) @ np.kron(vec(A)[:, None], np.eye(p * q))
