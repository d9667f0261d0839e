"""diagnose() on hand-made values: each explanation, its words, and what it must not claim. No JAX here,
except where a test says so."""

import numpy as np
import pytest

from bncheck.compare import error_map
from bncheck.assess.diagnose import diagnose

rng = np.random.default_rng(0)


def draws(make, Ns=(3, 5, 8, 13), shape=(4, 3)):
    """(dims, got, ref) for random refs at several N, got = make(ref, N)."""
    out = []
    for N in Ns:
        ref = rng.standard_normal(shape)
        out.append(({"N": N, "p1": shape[0], "p2": shape[-1], "k": 1}, make(ref, N), ref))
    return out


class FakeRerun:
    """What bncheck.variants.Rerun hands diagnose, made by hand."""

    def __init__(self, fields, variants=None):
        self._fields, self._variants = fields, variants or {}

    def fields(self, forward=True):
        return self._fields

    def variants(self):
        return self._variants


@pytest.mark.parametrize("name,f", [
    ("N", lambda N: N), ("1/N", lambda N: 1 / N), ("2", lambda N: 2.0), ("1/2", lambda N: 0.5),
    ("N/(N-1)", lambda N: N / (N - 1)), ("2N", lambda N: 2 * N), ("1/(2N)", lambda N: 1 / (2 * N)),
    ("2/N", lambda N: 2 / N), ("N²", lambda N: N**2), ("-N", lambda N: -N),
])
def test_scale_names_the_factor(name, f):
    found = diagnose(draws(lambda ref, N: f(N) * ref))
    assert found["code"] == "scale"
    assert found["factor_name"] == name
    assert found["factor"] == pytest.approx(f(3))
    assert f"off by a factor of {name}" in found["message"]


def test_sign():
    found = diagnose(draws(lambda ref, N: -ref))
    assert (found["code"], found["factor_name"]) == ("sign", "-1")


def test_a_constant_no_name_fits_is_still_a_scale():
    found = diagnose(draws(lambda ref, N: 3.7 * ref))
    assert found["code"] == "scale" and found["factor"] == pytest.approx(3.7) and "factor_name" not in found


def test_unrelated_values_are_unknown():
    assert diagnose(draws(lambda ref, N: rng.standard_normal(ref.shape)))["code"] == "unknown"


def test_values_within_closeness_of_the_reference_are_no_explanation():
    # The draws failed their check; "equal to 1e-9" must not be reported as a factor of 1.
    assert diagnose(draws(lambda ref, N: ref * (1 + 1e-9)))["code"] == "unknown"


def test_square_transpose():
    found = diagnose(draws(lambda ref, N: ref.T, shape=(4, 4)))
    assert found["code"] == "transpose" and found["order"] == "transposed"


def test_jacobian_rows_in_row_major_vec_order():
    # ∂vec(B)/∂vec(G1)ᵀ for B (3, 2) and G1 (2, 2): rows reordered as B.reshape(-1) would.
    out_shape, target = (3, 2), (2, 2)
    rows = np.arange(6).reshape(2, 3).T.reshape(-1)
    found = diagnose(draws(lambda ref, N: ref[rows], shape=(6, 4)), layout=lambda dims: (out_shape, target))
    assert found["code"] == "transpose" and found["order"] == "rows follow row-major vec order"


@pytest.mark.parametrize("shape,make,repair", [
    ((5,), lambda ref: ref[None, :], "flatten"),  # (1, p) for (p,)
    ((5,), lambda ref: ref[:, None], "flatten"),  # (p, 1) for (p,)
    ((4, 3), lambda ref: ref.T, "transpose"),
    ((5,), lambda ref: np.diag(ref) + np.triu(np.ones((5, 5)), 1), "diagonal"),
])
def test_shape_repairs(shape, make, repair):
    samples = draws(lambda ref, N: make(ref), shape=shape)
    got = samples[0][1]
    problem = {"code": "shape", "message": f"returned shape {got.shape}, expected {shape}"}
    found = diagnose(samples, problem)
    assert (found["code"], found["repair"], found["repaired"]) == ("shape", repair, None)
    assert found["message"].endswith("it matches the reference")


def test_a_repaired_value_is_diagnosed_in_turn():
    samples = draws(lambda ref, N: N * ref[None, :], Ns=(10, 10, 10), shape=(4,))
    found = diagnose(samples, {"code": "shape", "message": "returned shape (1, 4), expected (4,)"})
    assert found["message"] == ("returned shape (1, 4), expected (4,); flattened, it is off by a factor of N "
                                "(= 10 at N = 10)")
    assert found["repaired"]["factor_name"] == "N"


def test_a_shape_no_repair_fits_stays_a_shape_problem():
    samples = draws(lambda ref, N: np.ones(7), shape=(4,))
    problem = {"code": "shape", "message": "returned shape (7,), expected (4,)"}
    assert diagnose(samples, problem) == problem


def test_per_column_factor_of_a_draw_array():
    sigmas = [rng.uniform(0.5, 2, 3) for _ in range(4)]
    samples = [(d, d["N"] * sigma**2 * ref, ref) for (d, _, ref), sigma in zip(draws(lambda ref, N: ref), sigmas)]
    found = diagnose(samples, rerun=FakeRerun([{"sigma": s} for s in sigmas]))
    assert (found["code"], found["factor_name"], found["per"]) == ("scale", "N·sigma²", "column")


def test_a_variant_names_the_slip_and_a_variant_times_a_factor_too():
    variant = [rng.standard_normal((4, 3)) for _ in range(4)]
    samples = draws(lambda ref, N: ref)
    rerun = FakeRerun([{}] * 4, {"ddof": variant, "batch-stats-constant": variant})
    exact = [(d, v, r) for (d, _, r), v in zip(samples, variant)]
    found = diagnose(exact, rerun=rerun)
    assert (found["code"], found["variant"], found["factor_name"]) == ("ddof", "ddof", "1")
    scaled = [(d, 2 * v, r) for (d, _, r), v in zip(samples, variant)]
    found = diagnose(scaled, rerun=FakeRerun([{}] * 4, {"batch-stats-constant:mean": variant}))
    assert (found["code"], found["variant"], found["factor_name"]) == ("batch-stats-constant",
                                                                      "batch-stats-constant:mean", "2")
    assert "off by a factor of 2" in found["message"]


def test_a_variant_times_a_per_column_factor_at_one_column_of_one_draw():
    # The seed question's grad_G1 replayed at p2 = 1: the held-constant gradient times N·sigma², one
    # number for the one column, which no constant name fits (it was `unknown`, issue 16).
    dims, _, ref = draws(lambda ref, N: ref, Ns=(3,), shape=(2, 1))[0]
    held, sigma = rng.standard_normal((2, 1)), np.array([0.7])
    rerun = FakeRerun([{"sigma": sigma}], {"batch-stats-constant": [held]})
    found = diagnose([(dims, 3 * sigma**2 * held, ref)], rerun=rerun)
    assert (found["code"], found["variant"], found["factor_name"]) == ("batch-stats-constant", "batch-stats-constant",
                                                                      "N·sigma²")


def test_approximate_fit_on_most_draws_is_reported_as_such():
    samples = draws(lambda ref, N: N * ref * (1 + 1e-4 * rng.standard_normal(ref.shape)), Ns=(3, 5, 8, 13))
    wild = samples[0][0], rng.standard_normal((4, 3)), samples[0][2]
    found = diagnose([*samples, wild])
    assert found["code"] == "scale" and found["factor_name"] == "N" and found["approximate"] is True
    assert found["fits"] == "4 of 5 failing draws"
    assert "approximately" in found["message"]


def test_non_finite_and_non_array():
    from bncheck.compare import compare

    ref = np.ones(3)
    assert diagnose([({"N": 3}, ref, ref)], {"code": "non-finite", "message": "1 non-finite entry"})["code"] == "non-finite"
    result = compare(1.0, ref, 1e-8, 1e-12)
    found = diagnose([({"N": 3}, 1.0, ref)], {"code": result.problem, "message": result.message})
    assert found["code"] == "shape" and "expected shape (3,)" in found["message"]


def test_error_map_downsamples_and_lists_the_worst_entries():
    ref = np.zeros((40, 70))
    got = ref.copy()
    got[33, 5] = 4.0
    got[2, 69] = -2.0
    m = error_map(got, ref)
    assert m["block"] == [3, 3] and len(m["grid"]) == 14 and len(m["grid"][0]) == 24
    assert m["grid"][11][1] == 4.0 and m["max"] == 4.0
    assert [e["index"] for e in m["entries"]] == [[33, 5], [2, 69]]  # entries with no error are left out
    assert m["entries"][0]["ratio"] is None  # want = 0


def test_the_convention_factors_say_what_they_are():
    found = diagnose(draws(lambda ref, N: N / (N - 1) * ref))
    assert found["message"].endswith("the ratio of the variance divisors N and N - 1 (ddof 0 against 1)")
    found = diagnose(draws(lambda ref, N: ((N - 1) / N) ** 0.5 * ref))
    assert found["factor_name"] == "√((N-1)/N)" and "sigma with ddof 0 to sigma with ddof 1" in found["message"]


def test_kronecker_factors_swapped_in_a_dense_jacobian():
    # kron(X, I_3) where kron(I_3, X) belongs, X 4×2: X ⊗ I_3 = K_{4,3} (I_3 ⊗ X) K_{3,2}, neither the
    # row-major vec order of the layout's shapes.
    samples = []
    for N in (3, 5):
        X = rng.standard_normal((4, 2))
        samples.append(({"N": N}, np.kron(X, np.eye(3)), np.kron(np.eye(3), X)))
    found = diagnose(samples, layout=lambda dims: ((2, 6), (6, 1)))
    assert (found["code"], found["kronecker"]) == ("transpose", "swapped")
    assert found["order"] == "rows and columns are in a commutation matrix's order (K_{4,3}, K_{3,2})"
    assert "kron(X, I) where kron(I, X) belongs" in found["message"]


def test_rows_in_another_order_are_a_layout_slip():
    perm = rng.permutation(6)
    found = diagnose(draws(lambda ref, N: ref[perm], shape=(6, 4)), layout=lambda dims: ((3, 2), (2, 2)))
    assert (found["code"], found["order"]) == ("transpose", "rows are in another order")


def test_a_gradient_of_zeros_says_so():
    found = diagnose(draws(lambda ref, N: np.zeros_like(ref)))
    assert found["code"] == "zeros" and found["message"].startswith("returns zeros")
    assert "constant factor" not in found["message"]
