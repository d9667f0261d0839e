"""Imports a derivation (a user's .py file or a built-in by name) and finds its checkable functions.

A function is checkable when its name is `grad_<target>`, `jac_<output>_<target>` or
`jvp_<output>_<target>` for a target (input or parameter) and output (forward field) of the model.
Names with one of those prefixes that match nothing are kept as `unknown`: a typo such as `grad_G_1`
must be reported, never silently skipped.
"""

from __future__ import annotations

import difflib
import importlib
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable

from bncheck.errors import LoadError, describe
from bncheck.models import Check, Model
from bncheck.userfile import import_user_file

PREFIXES = ("grad_", "jac_", "jvp_")


@dataclass
class Derivation:
    name: str  # as the user named it: a built-in's name or the path given
    file: str  # the module's file, to find the user's own lines in a traceback
    functions: dict[str, Callable] = field(default_factory=dict)
    checks: dict[str, Check] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)  # function name -> why it matches nothing


def _known_names(model: Model) -> list[str]:
    names = [f"grad_{t}" for t in model.targets()]
    names += [f"{p}{o}_{t}" for p in ("jac_", "jvp_") for o in model.outputs for t in model.targets()]
    return names


def unknown_name(name: str, model: Model) -> str:
    """Why `name` is no checkable function of `model`, with the closest one as a hint."""
    if len(name) > 80:  # a name from a hostile file: difflib is quadratic in it, and one line is short
        return f"{name[:80]}… names no target or output of model {model.name}"
    close = difflib.get_close_matches(name, _known_names(model), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{name} names no target or output of model {model.name}{hint}"


def is_path(spec: str) -> bool:
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        return True
    try:
        return Path(spec).is_file()
    except (OSError, ValueError):  # a name too long to be a file, or with a NUL byte: no file
        return False


def _import_builtin(model: Model, spec: str) -> ModuleType:
    try:
        return importlib.import_module(model.derivations[spec])
    except ImportError as err:  # a model file's DERIVATIONS may name a module that is not there
        raise LoadError(f"derivation: {spec} of model {model.name} cannot be imported: {describe(err)}") from err


def _defined_in(value, module: ModuleType) -> bool:
    try:
        return getattr(value, "__module__", None) == module.__name__
    except Exception:  # an object whose __getattr__ raises is no definition of this file's
        return False


def load_derivation(spec: str | ModuleType, model: Model) -> Derivation:
    """A derivation from a path, a built-in name of `model`, or an imported module."""
    if isinstance(spec, ModuleType):
        module, name = spec, spec.__name__
    elif not isinstance(spec, str):
        raise LoadError(f"derivation: give a path, a built-in's name or a module, not a {type(spec).__name__}")
    elif is_path(spec):
        module, name = import_user_file(Path(spec), "derivation", "bncheck_derivation"), spec
    elif spec in model.derivations:
        module, name = _import_builtin(model, spec), spec
    else:
        raise LoadError(
            f"derivation: {reprlib.repr(spec)} is neither a .py file nor a built-in derivation of model {model.name} "
            f"(built-ins: {', '.join(model.derivations)})"
        )

    derivation = Derivation(name=name, file=getattr(module, "__file__", "") or "")
    for attr, value in vars(module).items():
        if not attr.startswith(PREFIXES):
            continue
        check = model.check(attr)
        if not callable(value):
            if check is not None and name not in model.derivations:
                # `grad_beta = np.zeros(3)` claims a check as surely as a def does: never "missing".
                args = "ctx, V" if check.kind == "jvp" else "ctx"
                derivation.unknown[attr] = (
                    f"{attr} is a {type(value).__name__}, not a function; define it as def {attr}({args}): ..."
                )
            continue
        if check is not None:
            derivation.functions[attr] = value
            derivation.checks[attr] = check
        elif _defined_in(value, module) and name not in model.derivations:
            # Only the file's own definitions can be typos; imported helpers (bncheck.kron's
            # jac_kron_A, say) are not claims about this model, nor are a built-in's functions for
            # layers the model does not have at these options (mlp's grad_W3 at --layers 2).
            derivation.unknown[attr] = unknown_name(attr, model)
    if not derivation.checks and not derivation.unknown:
        raise LoadError(
            f"derivation: {name} defines no checkable function; define any of {', '.join(model.checks)}"
        )
    return derivation
