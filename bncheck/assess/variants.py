"""The failing draws of one check recomputed: the reference under the model's own settings and under each
of its variants (Model.variants: batch statistics held constant, the other ddof), with the forward record.

diagnose.py asks for these only when cheaper explanations (a factor, a sign, a transpose) fail, since
they cost a compile. The draws are the sweep's own (their arrays and JVP directions kept), computed by
the sweep's engine, so on the run's device and in its precision.
"""

from __future__ import annotations

import numpy as np

from bncheck.draws import Draw
from bncheck.engine import Engine
from bncheck.models import Check


class Rerun:
    """References of `draws` for `check`, computed on first use and kept. samples[i] pairs with draws[i]."""

    def __init__(self, engine: Engine, check: Check, draws: list[Draw], refs: list[np.ndarray]):
        self.engine = engine
        self.check = check
        self.draws = draws
        self.refs = refs  # the sweep's references, to find which JVP direction each sample is
        self._cache: dict[str, tuple[list[np.ndarray], list[dict[str, np.ndarray]]]] | None = None

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
        computed = self._computed()
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
