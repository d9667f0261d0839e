"""The failing draws of one check recomputed: the reference under the model's own settings and under each
of its variants (Model.variants: batch statistics held constant, the other ddof), with the forward record;
and, asked for apart, the reference under other values of eps (EPS_TRIED).

diagnose.py asks for these only when cheaper explanations (a factor, a sign, a transpose) fail, since
they cost a compile, and for the eps values only when the model's variants fail as well. The draws are
the sweep's own (their arrays and JVP directions kept), computed by the sweep's engine, so on the run's
device and in its precision.
"""

from __future__ import annotations

import numpy as np

from bncheck.draws import Draw
from bncheck.engine import Engine
from bncheck.models import Check

# The eps values code hard-codes (PyTorch and the courses' 1e-5, Keras' 1e-3 and 1e-7, the 1e-8 of
# many from-scratch layers, ...): a value that matches the reference under one of them, and not under
# the run's eps, comes from code with an eps of its own.
EPS_TRIED = (0.0, 1e-12, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


class Rerun:
    """References of `draws` for `check`, computed on first use and kept. samples[i] pairs with draws[i]."""

    def __init__(self, engine: Engine, check: Check, draws: list[Draw], refs: list[np.ndarray]):
        self.engine = engine
        self.check = check
        self.draws = draws
        self.refs = refs  # the sweep's references, to find which JVP direction each sample is
        self._cache: dict[str, tuple[list[np.ndarray], list[dict[str, np.ndarray]]]] | None = None
        self._eps: tuple[float, dict[float, list[np.ndarray]]] | None = None

    def _computed(self) -> dict[str, tuple[list[np.ndarray], list[dict[str, np.ndarray]]]]:
        if self._cache is None:
            self._cache = self.engine.variants(self.check, self.draws)
        return self._cache

    def fields(self, forward: bool = True) -> list[dict[str, np.ndarray]]:
        """Per draw: its inputs and parameters, and with `forward` its forward record (a compile)."""
        if not forward:
            return [dict(draw.arrays) for draw in self.draws]
        _, fwd = self._computed()[""]
        return [{**draw.arrays, **record} for draw, record in zip(self.draws, fwd)]

    def variants(self) -> dict[str, list[np.ndarray]]:
        """Per variant key (Model.variants): the reference of each draw under it."""
        return self._picked(self._computed())

    def eps_variants(self) -> tuple[float, dict[float, list[np.ndarray]]] | None:
        """The run's eps and, per other eps of EPS_TRIED, the reference of each draw under it (one more
        compile); None for a model without an eps."""
        cfg = self.engine.cfg
        if "eps" not in cfg:
            return None
        if self._eps is None:
            others = {f"eps:{eps!r}": {**cfg, "eps": eps} for eps in EPS_TRIED if eps != cfg["eps"]}
            computed = self.engine.variants(self.check, self.draws, others)
            self._eps = cfg["eps"], {float(key.removeprefix("eps:")): refs for key, refs in self._picked(computed).items()}
        return self._eps

    def _picked(self, computed: dict[str, tuple[list[np.ndarray], list]]) -> dict[str, list[np.ndarray]]:
        base, _ = computed[""]
        out = {}
        for key, (refs, _) in computed.items():
            if key and self.check.kind == "jvp":
                # A sample is the worst of the draw's directions: pick that direction back out.
                refs = [r[int(np.argmin([np.abs(b - want).max() for b in bs]))]
                        for r, bs, want in zip(refs, base, self.refs)]
            if key:
                out[key] = refs
        return out
