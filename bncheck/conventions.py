"""Shape conventions: the shapes a user's code keeps arrays in where they differ from the model's by a
reshape alone, such as parameters kept as (1, D) rows or (1, C, 1, 1) per-channel arrays, as course
code broadcasts them.

Declared once (`--param-shapes "gamma=1,D beta=1,D"`, or `param_shapes` in a config), in the model's
dimension names: a function is given those arrays so shaped, and a gradient it returns so shaped is
compared after reshaping it to the model's shape. A gradient of any other shape is compared as it is,
so a (1, D) returned where (D,) is declared (or nothing is) is the shape slip it is, diagnosed `shape`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from bncheck.errors import SettingsError
from bncheck.loader import Derivation
from bncheck.models import Model, concrete, probe_dims, symbolic

Shapes = dict[str, tuple[str | int, ...]]


def parse_param_shapes(text: str, model: Model) -> Shapes:
    """`"gamma=1,D beta=1,D"` -> {"gamma": (1, "D"), "beta": (1, "D")}, each a reshape of one of the
    model's inputs or parameters that keeps its sized axes in order."""
    shapes: Shapes = {}
    for part in filter(None, re.split(r"[;\s]+", re.sub(r"\s*,\s*", ",", text.strip()))):
        name, sep, dims = part.partition("=")
        axes = [d for d in dims.split(",") if d]
        if not sep or not axes:
            raise SettingsError(f"param_shapes: cannot parse {part!r} in {text!r}; expected NAME=DIM,DIM ... such as gamma=1,D beta=1,D")
        if name in shapes:
            raise SettingsError(f"param_shapes: {name} is given twice in {text!r}")
        shapes[name] = tuple(int(d) if d.isdigit() else d for d in axes)
    if not shapes:
        raise SettingsError(f"param_shapes: {text!r} names no array; expected NAME=DIM,DIM ... such as gamma=1,D beta=1,D")
    probe = probe_dims(model)
    own = {**model.inputs(probe), **model.params(probe)}
    for name, axes in shapes.items():
        if name not in own:
            raise SettingsError(f"param_shapes: {name} is no input or parameter of model {model.name} (they are: {', '.join(own)})")
        for d in axes:
            if isinstance(d, str) and d not in model.dims:
                raise SettingsError(f"param_shapes: {name}'s {d} is no dimension of model {model.name} (they are: {', '.join(model.dims)})")
            if d == 0:
                raise SettingsError(f"param_shapes: {name} has an axis of size 0")
        written = ",".join(map(str, symbolic(own[name], probe))) or "a scalar"
        sized = [d for d in symbolic(own[name], probe) if d != 1]
        if [d for d in axes if d != 1] != sized:
            raise SettingsError(
                f"param_shapes: {name}={','.join(map(str, axes))} is no reshape of the model's {name} ({written}): "
                f"it must keep the same sized axes in the same order, adding or dropping only 1s"
            )
    return shapes


@dataclass(frozen=True)
class Convention:
    """Declared shapes (parse_param_shapes) applied to a draw's arrays and to returned gradients."""

    shapes: Shapes

    def given(self, name: str, array: Any, dims: Mapping[str, int]) -> Any:
        """An array in the user's shape: the declared one, or its own."""
        axes = self.shapes.get(name)
        return array if axes is None else np.reshape(array, concrete(axes, dims))

    def returned(self, name: str, value: Any, model_shape: tuple[int, ...], dims: Mapping[str, int]) -> Any:
        """A gradient the user returned for `name`, in the model's shape when it has the declared shape;
        as it is otherwise (the comparison then judges its shape)."""
        axes = self.shapes.get(name)
        if axes is None:
            return value
        try:
            shape = tuple(np.shape(value))
        except Exception:  # the user's object: the comparison reads it, and says what is wrong with it
            return value
        return np.reshape(value, model_shape) if shape == concrete(axes, dims) else value


def convention(text: str | None, model: Model) -> Convention | None:
    return None if text is None else Convention(parse_param_shapes(text, model))


def reshaped(derivation: Derivation, model: Model, conv: Convention) -> Derivation:
    """A derivation (of grad_, jac_ and jvp_ functions of ctx) whose functions see the declared arrays of
    ctx, and each jvp_ direction V of a declared target, in the user's shapes, and whose grad_ values so
    shaped are compared in the model's."""
    def wrap(name: str, fn: Callable) -> Callable:
        check = derivation.checks[name]

        def called(ctx, *rest):
            dims = {d: getattr(ctx, d) for d in model.dims}
            seen = ctx.copy()
            # Views of ctx's read-only arrays: still read-only, so the tamper checks keep their meaning.
            seen.__dict__.update({t: conv.given(t, getattr(ctx, t), dims) for t in conv.shapes})
            if check.kind == "jvp":
                rest = (conv.given(check.target, rest[0], dims),)
            value = fn(seen, *rest)
            if check.kind != "gradient":
                return value
            return conv.returned(check.target, value, tuple(np.shape(getattr(ctx, check.target))), dims)

        return called

    functions = {name: wrap(name, fn) for name, fn in derivation.functions.items()}
    return Derivation(derivation.name, derivation.file, functions, dict(derivation.checks), dict(derivation.unknown))
