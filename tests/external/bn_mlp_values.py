"""A program that is not bncheck: reads an exported bn-mlp case, computes its gradients and Jacobians
by the closed form, and writes them back for `bncheck verify-values`.

Only json, csv and numpy: it stands for code in any language that reads the documented layout.

    python bn_mlp_values.py CASE OUT [--drop-inv-n]

CASE is a .json file or a csv folder; OUT is written as JSON when it ends in .json, else as a csv
folder. --drop-inv-n leaves the 1/N of the loss out of grad_G2, the slip bncheck should name.
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np


def read_case(path: Path) -> tuple[dict, dict]:
    if path.suffix == ".json":
        doc = json.loads(path.read_text())
        return doc["settings"], {name: np.array(value, dtype=float) for name, value in doc["arrays"].items()}
    settings = json.loads((path / "settings.json").read_text())["settings"]
    arrays = {}
    for file in path.glob("*.csv"):
        with file.open(newline="") as fh:
            arrays[file.stem] = np.array([[float(cell) for cell in row] for row in csv.reader(fh) if row])
    for name in ("gamma", "beta"):  # vectors are one value per line
        arrays[name] = arrays[name][:, 0]
    return settings, arrays


def values(settings: dict, a: dict, drop_inv_n: bool) -> dict:
    X, y, G1, G2, gamma, beta = (a[n] for n in ("X", "y", "G1", "G2", "gamma", "beta"))
    N, ddof, eps = X.shape[0], settings["ddof"], settings["eps"]
    assert settings["activation"] == "relu"
    n = N - ddof
    H = X @ G1
    Hc = H - H.mean(axis=0)
    sigma = np.sqrt((Hc**2).sum(axis=0) / n + eps)
    Hhat = Hc / sigma
    B = gamma * Hhat + beta
    A, dA = np.maximum(B, 0), (B > 0).astype(float)
    resid = y - A @ G2
    D = -(2 / N) * (resid @ G2.T) * dA  # dR/dB
    dH = (gamma / sigma) * (D - D.mean(axis=0) - Hhat * (Hhat * D).sum(axis=0) / n)
    p2 = G1.shape[1]
    ones = np.ones((N, 1))
    centring = np.eye(N) - np.ones((N, N)) / N
    # B's column j depends on G1's column j alone: a block-diagonal Jacobian in column-major vec.
    jac_B_G1 = np.zeros((N * p2, G1.size))
    for j in range(p2):
        h = Hhat[:, j : j + 1]
        block = (gamma[j] / sigma[j]) * (np.eye(N) - h @ h.T / n) @ centring @ X
        jac_B_G1[j * N : (j + 1) * N, j * X.shape[1] : (j + 1) * X.shape[1]] = block
    return {
        "grad_beta": D.sum(axis=0),
        "grad_gamma": (D * Hhat).sum(axis=0),
        "grad_G1": X.T @ dH,
        "grad_G2": -(2 if drop_inv_n else 2 / N) * A.T @ resid,
        "jac_B_beta": np.kron(np.eye(p2), ones),
        "jac_B_gamma": np.kron(np.eye(p2), ones) * Hhat.T.reshape(-1, 1),
        "jac_B_G1": jac_B_G1,
    }


def write(out: Path, result: dict) -> None:
    if out.suffix == ".json":
        out.write_text(json.dumps({"arrays": {name: v.tolist() for name, v in result.items()}}))
        return
    out.mkdir(exist_ok=True)
    for name, v in result.items():
        with (out / f"{name}.csv").open("w", newline="") as fh:
            csv.writer(fh).writerows(v.reshape(-1, 1) if v.ndim == 1 else v)


if __name__ == "__main__":
    case, out = Path(sys.argv[1]), Path(sys.argv[2])
    settings, arrays = read_case(case)
    write(out, values(settings, arrays, "--drop-inv-n" in sys.argv[3:]))
