"""The boundary around a user's code: importing a user's file, finding the user's own lines in a
traceback, and what the code may not do to the process that checks it.

A derivation runs inside bncheck's own process, beside the references and comparisons that judge it.
`guarded()` is entered before a user's file is imported and left when the report is built; while it
holds:

- `os._exit` raises instead of ending the process, so no function (and no thread it started) can end a
  run with exit status 0 before a verdict exists;
- an exception a user's thread leaves unhandled, or one raised in a `__del__`, is kept quiet instead
  of printing a traceback into the report's stream;
- every function of NumPy, JAX, `math`, `builtins` and bncheck's own modules, and the ctx class, is
  noted before user code runs and compared after: a file that replaced one (`np.abs = ...`, a patched
  `jax.grad`, `Ctx.__getattr__`) could make every check pass, so the run is refused, with the names;
  so is one that replaced those modules in sys.modules (put back at once, see put_back, so that the
  run can get that far).
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import math
import os
import sys
import sysconfig
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from bncheck.errors import BncheckError, LoadError, describe


# The working folder when bncheck started, before any user code could change it: frames are shown
# relative to it, as the user named the files.
START = Path.cwd()


def shown_path(filename: str) -> str:
    """A file name as the user would write it: relative to where bncheck started, if it lies below."""
    try:
        return str(Path(filename).relative_to(START))
    except ValueError:
        return filename


@functools.lru_cache(maxsize=None)
def _library_roots() -> tuple[Path, ...]:
    """The folders of the code a user's traceback frames are not: bncheck, JAX, jaxlib and NumPy."""
    roots = [Path(__file__).resolve().parent]
    for name in ("jax", "jaxlib", "numpy"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            roots.append(Path(module.__file__).resolve().parent)
    return tuple(roots)


@functools.lru_cache(maxsize=4096)
def _is_library(filename: str) -> bool:
    """Whether a frame's file belongs to bncheck, JAX, NumPy or Python's standard library (its
    site-packages aside: a user's own package may be installed there)."""
    if filename.startswith("<frozen"):
        return True
    try:
        path = Path(filename).resolve()
    except (OSError, ValueError):
        return False
    if any(root == path or root in path.parents for root in _library_roots()):
        return True
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    return stdlib in path.parents and not {"site-packages", "dist-packages"} & set(path.parts)


def own_frames(err: BaseException) -> list[traceback.FrameSummary]:
    """The frames of err's traceback in the user's code, outermost first: every file outside bncheck,
    JAX, NumPy and the standard library, so that an error raised inside a module the user's file
    imports (their own layers.py) shows the line where it happened there."""
    return [f for f in traceback.extract_tb(err.__traceback__) if not _is_library(f.filename)]


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


def import_user_file(path: Path, what: str, prefix: str, reuse: bool = False) -> ModuleType:
    """Runs the user's file `path` as a module named `prefix` plus a digest of its full path, so two
    files never share a module entry (`reuse`: a file run before is not run again); `what`
    ("derivation", "model") starts each error. Everything the file can do while it is imported,
    SystemExit and other BaseExceptions included, is one LoadError; KeyboardInterrupt alone goes on,
    as the user asked to stop. Call it only with a path the user named as code to run."""
    try:
        if not path.is_file():
            raise LoadError(f"{what}: {path} is not a file" if path.exists() else f"{what}: no such file: {path}")
        name = f"{prefix}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}"
        if reuse and name in sys.modules:
            return sys.modules[name]
        source = path.read_bytes()
    except (OSError, ValueError) as err:  # a name too long, a folder that cannot be listed, a NUL byte
        raise LoadError(f"{what}: cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    try:
        # Bytes, so that Python applies its own rules: a UTF-8 BOM, a `coding:` cookie. Not inheriting
        # this module's `from __future__` flags, so that the file runs as Python would run it.
        # Under its absolute path, as Python names an imported module's file: a function that changes
        # the working folder must not lose its own __file__, nor bncheck the frames in it.
        code = compile(source, str(path.resolve()), "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as err:
        line = f":{err.lineno}" if getattr(err, "lineno", None) else ""
        raise LoadError(f"{what}: {path}{line}: syntax error: {getattr(err, 'msg', None) or err}") from None
    module = ModuleType(name)
    module.__file__ = str(path.resolve())
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except KeyboardInterrupt:
        sys.modules.pop(name, None)
        raise
    except BaseException as err:
        sys.modules.pop(name, None)
        frame = user_frame(err, str(path))
        where = f"{path}:{frame.lineno}" if frame else str(path)
        # Raised inside a module of the user's that the file imports: that line too.
        inner = own_frames(err)[-1:]
        if inner and inner[0] != frame:
            where += f" (at {shown_path(inner[0].filename)}:{inner[0].lineno})"
        raise LoadError(f"{what}: importing {where} failed: {describe(err)}") from err
    return module


# While guarded() holds: the modules bncheck imports by name (sys.modules entries a user's code could
# replace or set to None), and the names of those it found replaced.
_MODULES: dict[str, object] = {}
_REPLACED: list[str] = []


def put_back() -> None:
    """Puts back any module bncheck relies on that a user's code replaced in sys.modules (noting it,
    so that the run is refused when guarded() ends): called after each import and call of user code,
    so that bncheck's own next `import jax` still finds JAX."""
    for name, module in _MODULES.items():
        if sys.modules.get(name) is not module:
            sys.modules[name] = module
            _REPLACED.append(f"sys.modules[{name!r}]")


class ExitCalled(BaseException):
    """A user's code called os._exit, which bncheck does not let end its process."""


def _exit(status: int = 0) -> None:
    raise ExitCalled(f"os._exit({status}) was called; bncheck does not let a user's code end the process")


def _watched() -> list:
    import jax
    import jax.numpy
    import numpy

    modules = [numpy, numpy.linalg, jax, jax.numpy, jax.lax, jax.random, jax.tree_util, builtins, math, os]
    # The ctx class is kept per call (check.call); its module's other functions are watched here.
    return modules + [m for name, m in list(sys.modules.items()) if name == "bncheck" or name.startswith("bncheck.")]


def _snapshot(watched: list) -> list[tuple[object, dict[str, object]]]:
    return [(owner, {key: value for key, value in list(vars(owner).items()) if callable(value)}) for owner in watched]


def _name(owner, key: str) -> str:
    return f"{getattr(owner, '__module__', None) or ''}.{owner.__name__}.{key}".lstrip(".") if isinstance(owner, type) \
        else f"{owner.__name__}.{key}"


@contextmanager
def guarded() -> Iterator[None]:
    """See the module docstring. Raises BncheckError on leaving when a watched function was replaced
    (after putting it back)."""
    # bncheck's modules are watched as far as they are imported: the caller imports the ones that
    # judge (pipeline imports the report, and through it the sweep, the checks and the engine) first.
    before = _snapshot(_watched())
    core = ("numpy", "numpy.linalg", "jax", "jax.numpy", "jax.lax", "jax.random", "jax.tree_util")
    _MODULES.update({name: m for name, m in sys.modules.items() if name in core or name.split(".")[0] == "bncheck"})
    _REPLACED.clear()
    hooks = (os._exit, threading.excepthook, sys.unraisablehook)
    os._exit = _exit
    threading.excepthook = lambda args: None
    sys.unraisablehook = lambda unraisable: None
    try:
        yield
    finally:
        os._exit, threading.excepthook, sys.unraisablehook = hooks
        put_back()
        replaced = list(dict.fromkeys(_REPLACED))
        _MODULES.clear()
        for owner, functions in before:
            now = vars(owner)
            for key, was in functions.items():
                if now.get(key) is not was:
                    replaced.append(_name(owner, key))
                    setattr(owner, key, was)
        if replaced:
            raise BncheckError(
                f"derivation: the code under test replaced {', '.join(sorted(replaced)[:5])}"
                f"{f' and {len(replaced) - 5} more' if len(replaced) > 5 else ''}, which bncheck's references "
                f"and comparisons rely on; nothing it computed can be trusted, so nothing is reported"
            )
