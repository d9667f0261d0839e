"""Imports a derivation (a user's .py file or a built-in by name) and finds its checkable functions.

A function is checkable when its name is `grad_<target>`, `jac_<output>_<target>` or
`jvp_<output>_<target>` for a target (input or parameter) and output (forward field) of the model.
Names with one of those prefixes that match nothing are kept as `unknown`: a typo such as `grad_G_1`
must be reported, never silently skipped.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable

from bncheck.errors import LoadError
from bncheck.models import Model

PREFIXES = ("grad_", "jac_", "jvp_")


@dataclass(frozen=True)
class Check:
    """One function to verify: what it claims to compute."""

    name: str
    kind: str  # "gradient" (grad_), "jacobian" (dense jac_) or "jvp" (the differential form)
    target: str
    output: str | None = None  # the differentiated forward field, for jac_ and jvp_


@dataclass
class Derivation:
    name: str  # as the user named it: a built-in's name or the path given
    file: str  # the module's file, to find the user's own lines in a traceback
    functions: dict[str, Callable] = field(default_factory=dict)
    checks: dict[str, Check] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)  # function name -> why it matches nothing


def parse_check(name: str, model: Model) -> Check | None:
    targets = model.targets()
    if name.startswith("grad_"):
        target = name.removeprefix("grad_")
        return Check(name, "gradient", target) if target in targets else None
    for prefix, kind in (("jac_", "jacobian"), ("jvp_", "jvp")):
        if name.startswith(prefix):
            rest = name.removeprefix(prefix)
            for output in model.outputs:
                target = rest.removeprefix(output + "_")
                if rest.startswith(output + "_") and target in targets:
                    return Check(name, kind, target, output)
    return None


def _known_names(model: Model) -> list[str]:
    names = [f"grad_{t}" for t in model.targets()]
    names += [f"{p}{o}_{t}" for p in ("jac_", "jvp_") for o in model.outputs for t in model.targets()]
    return names


def unknown_name(name: str, model: Model) -> str:
    """Why `name` is no checkable function of `model`, with the closest one as a hint."""
    close = difflib.get_close_matches(name, _known_names(model), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{name} names no target or output of model {model.name}{hint}"


def is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec or Path(spec).is_file()


def user_frames(err: BaseException, file: str) -> list[traceback.FrameSummary]:
    """The frames of err's traceback that lie in the user's file, outermost first."""
    if not file:
        return []
    # Resolved: the module's __file__ can be absolute while the code was compiled under the path given.
    own = Path(file).resolve()
    return [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename).resolve() == own]


def user_frame(err: BaseException, file: str) -> traceback.FrameSummary | None:
    """The innermost frame of err's traceback that lies in the user's file, if any."""
    frames = user_frames(err, file)
    return frames[-1] if frames else None


def _import_file(path: Path) -> ModuleType:
    if not path.exists():
        raise LoadError(f"derivation: no such file: {path}")
    if not path.is_file():
        raise LoadError(f"derivation: {path} is not a file")
    # A name unique to the file's full path, so two derivations never share a module entry.
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"bncheck_derivation_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        source = path.read_text(encoding="utf-8")
        code = compile(source, str(path), "exec")
    except SyntaxError as err:
        raise LoadError(f"derivation: {path}:{err.lineno}: syntax error: {err.msg}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise LoadError(f"derivation: cannot read {path}: {err}") from None
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except Exception as err:
        del sys.modules[name]
        frame = user_frame(err, str(path))
        where = f"{path}:{frame.lineno}" if frame else str(path)
        raise LoadError(f"derivation: importing {where} failed: {type(err).__name__}: {err}") from err
    return module


def load_derivation(spec: str | ModuleType, model: Model) -> Derivation:
    """A derivation from a path, a built-in name of `model`, or an imported module."""
    if isinstance(spec, ModuleType):
        module, name = spec, spec.__name__
    elif is_path(spec):
        module, name = _import_file(Path(spec)), spec
    elif spec in model.derivations:
        module, name = importlib.import_module(model.derivations[spec]), spec
    else:
        raise LoadError(
            f"derivation: {spec!r} is neither a .py file nor a built-in derivation of model {model.name} "
            f"(built-ins: {', '.join(model.derivations)})"
        )

    derivation = Derivation(name=name, file=getattr(module, "__file__", "") or "")
    for attr, value in vars(module).items():
        if not attr.startswith(PREFIXES) or not callable(value):
            continue
        check = parse_check(attr, model)
        if check is not None:
            derivation.functions[attr] = value
            derivation.checks[attr] = check
        elif getattr(value, "__module__", None) == module.__name__ and name not in model.derivations:
            # Only the file's own definitions can be typos; imported helpers (bncheck.kron's
            # jac_kron_A, say) are not claims about this model, nor are a built-in's functions for
            # layers the model does not have at these options (mlp's grad_W3 at --layers 2).
            derivation.unknown[attr] = unknown_name(attr, model)
    if not derivation.checks and not derivation.unknown:
        raise LoadError(
            f"derivation: {name} defines no checkable function; define any of {', '.join(model.checks)}"
        )
    return derivation
