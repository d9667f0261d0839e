"""The registry of models: each one a forward pass, named dimensions, inputs, parameters and checks.

A model is plain data plus a `forward` written in jax.numpy. Nothing here imports JAX: `bncheck
models` and `--help` stay fast, and each forward imports jax.numpy when it is first traced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

Shape = tuple[int, ...]
Dims = Mapping[str, int]

ACTIVATIONS = ("relu", "tanh", "sigmoid", "softplus", "identity")


@dataclass(frozen=True)
class Model:
    name: str
    summary: str
    # Named dimensions and their default inclusive sweep ranges.
    dims: Mapping[str, tuple[int, int]]
    inputs: Callable[[Dims], dict[str, Shape]]
    params: Callable[[Dims], dict[str, Shape]]
    # forward(cfg, masks, **arrays) -> {"R": scalar, field: array, ...}. `masks` maps a dimension to a
    # 0/1 vector over its padded length (see `paddable`); cfg holds the settings named in `options`.
    forward: Callable[..., dict[str, Any]]
    # The arrays forward returns besides R, each a ctx field, with a description for `bncheck models`.
    outputs: Mapping[str, str]
    checks: tuple[str, ...]
    derivations: Mapping[str, str]
    default_derivation: str
    options: tuple[str, ...] = ()
    dim_defaults: Mapping[str, int] = field(default_factory=dict)
    # True when forward honours masks, so draws of different sizes can share one compiled reference by
    # zero-padding every array to a common bucket shape.
    paddable: bool = False
    # check_dims(dims, settings) -> a sentence saying why these dims cannot be run, or None.
    check_dims: Callable[[Dims, Any], str | None] = lambda dims, settings: None
    # kink_field(settings) -> the forward field whose zeros are kinks of the activation, or None.
    kink_field: Callable[[Any], str | None] = lambda settings: None
    # variants(cfg) -> {diagnosis code: cfg'}: the same model under a known wrong assumption (batch
    # statistics held constant, the other ddof). A failing check that matches one is named by it. A key
    # "code:detail" is one more variant for the same code (the mean alone held constant, say).
    variants: Callable[[dict[str, Any]], dict[str, dict[str, Any]]] = lambda cfg: {}

    def _names(self, which: Callable[[Dims], dict[str, Shape]]) -> tuple[str, ...]:
        return tuple(which({name: lo for name, (lo, _) in self.dims.items()}))

    def targets(self) -> tuple[str, ...]:
        """Every array a `grad_` function may be written for: the inputs, then the parameters."""
        return self._names(self.inputs) + self._names(self.params)

    def parameter_names(self) -> tuple[str, ...]:
        return self._names(self.params)


# Distinct sizes, one per dimension, so that each axis of a traced shape names its dimension.
_PROBE_SIZES = (101, 103, 107, 109, 113, 127, 131, 137, 139, 149)


def probe_dims(model: Model) -> dict[str, int]:
    return dict(zip(model.dims, _PROBE_SIZES))


def symbolic(shape: Shape, probe: Dims) -> tuple[str | int, ...]:
    """A shape measured at probe_dims, written in dimension names (other sizes stay numbers)."""
    names = {size: name for name, size in probe.items()}
    return tuple(names.get(size, size) for size in shape)


def concrete(shape: tuple[str | int, ...], dims: Dims) -> Shape:
    return tuple(dims[s] if isinstance(s, str) else s for s in shape)


_BUILTIN = {"bn-mlp": "bncheck.models.bn_mlp"}


def model_names() -> tuple[str, ...]:
    return tuple(_BUILTIN)


def get_model(name: str) -> Model:
    from importlib import import_module

    from bncheck.errors import SettingsError

    if name not in _BUILTIN:
        raise SettingsError(f"model: unknown model {name!r}; choose one of {', '.join(_BUILTIN)}")
    return import_module(_BUILTIN[name]).MODEL
