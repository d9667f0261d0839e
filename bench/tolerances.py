"""The error distributions the default tolerances rest on (README "Tolerances").

Runs a correct derivation over many draws and prints, per dtype and check, quantiles of
max|got - ref| / max|ref| by batch size N, the worst draw, and the largest fraction of the allowed
error (atol + rtol max|ref| + noise floor) that any draw used: below 1 means no false failure. A float64
sweep computes the noise floor only for draws that fail without it, so there the fraction of the others
is of atol + rtol max|ref| alone, an upper bound. Usage:

    python bench/tolerances.py --trials 10000                 # closed-form, relu, ddof 0, eps 1e-5
    python bench/tolerances.py --trials 2000 --ddof 1 --eps 0 --activation tanh
    python bench/tolerances.py --model mlp --loss xent --layers 4 --dtype float32 --trials 100000
    python bench/tolerances.py --dtype bfloat16 --dtype float16 --trials 10000
    python bench/tolerances.py --model softmax-loss --dtype float16 --trials 10000   # its default built-in
"""

from __future__ import annotations

import argparse

import numpy as np

from bncheck.compare import TOLERANCES
from bncheck.engine import Engine, scope
from bncheck.options import DTYPES
from bncheck.loader import load_derivation
from bncheck.models import get_model
from bncheck.settings import resolve
from bncheck.sweep import run_sweep

BANDS = ((2, 2), (3, 4), (5, 16), (17, 10**9))


def _batch(dims: dict[str, int]) -> int:
    """The size the error bands are by: the batch (N, or M for the MLP), else the model's first size."""
    return dims.get("N", dims.get("M", next(iter(dims.values()))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("derivation", nargs="?", default=None, help="a file or built-in; the model's default built-in")
    parser.add_argument("--trials", type=int, default=10000)
    parser.add_argument("--dtype", action="append", choices=DTYPES)
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--ddof", type=int, default=0)
    parser.add_argument("--eps", type=float, default=1e-5)
    parser.add_argument("--model", default="bn-mlp")
    parser.add_argument("--loss", default=None, help="mlp: mse | xent")
    parser.add_argument("--layers", type=int, default=None, help="mlp: number of layers")
    parser.add_argument("--config", default=None)
    args = parser.parse_args()

    for dtype in args.dtype or ["float64", "float32"]:
        flags = dict(trials=args.trials, dtype=dtype, model=args.model, activation=args.activation,
                     loss=args.loss, layers=args.layers)
        if args.model in ("bn-mlp", "bn-layer"):
            flags.update(ddof=args.ddof, eps=args.eps)
        settings = resolve(flags, args.config)
        model = get_model(settings.model, settings.to_dict())
        # Per check, every judged draw: (max rel err, share of the allowance used, N, case id).
        judged: dict[str, list[tuple[float, float, int, str]]] = {}

        def note(check, draw, result) -> None:
            if result.problem is None:
                used = result.abs_err / result.allowed if result.allowed > 0 else float(result.abs_err > 0)
                judged.setdefault(check.name, []).append((result.rel_err, used, _batch(draw.dims), draw.case_id(dtype)))

        with scope(settings.device):
            result = run_sweep(Engine(model, settings), load_derivation(args.derivation or model.default_derivation, model), on_compared=note)
        tol = TOLERANCES[dtype]
        print(f"\n{dtype}: {args.model} {', '.join(f'{k} {v}' for k, v in settings.model_options(model).items())}; {args.trials} draws, {result.redrawn} redrawn off a relu kink; "
              f"default rtol {tol.rtol:g}, atol {tol.atol:g}")
        print(f"{'check':12} {'N':>7} {'draws':>6} {'median':>9} {'p99':>9} {'p99.9':>9} {'max':>9}")
        for name, tally in result.tallies.items():
            rows = judged.get(name, [])
            assert len(rows) == result.draws, "every draw must have been compared"
            errors = np.array([r[0] for r in rows])
            N = np.array([r[2] for r in rows])
            for lo, hi in BANDS:
                band = errors[(N >= lo) & (N <= hi)]
                if band.size:
                    label = f"{lo}" if lo == hi else f"{lo}-{hi if hi < 10**9 else ''}"
                    q = np.quantile(band, [0.5, 0.99, 0.999])
                    print(f"{name:12} {label:>7} {band.size:6d} {q[0]:9.1e} {q[1]:9.1e} {q[2]:9.1e} {band.max():9.1e}")
            used = np.array([r[1] for r in rows])
            print(f"{'':12} worst rel err {errors.max():.2e} at {rows[int(np.argmax(errors))][3]}; "
                  f"most of the allowance used: {used.max():.2g} at {rows[int(np.argmax(used))][3]}; "
                  f"failures: {tally.failures}")


if __name__ == "__main__":
    main()
