"""A derivation's functions as JAX sees them: which use JAX, which ctx fields they read, and the
jax.numpy ones traced once for each family of shapes.

A function uses JAX when its code, or a function it calls, names `jax` or something of jax's. Such a
function is traced (jax.make_jaxpr, with the ctx's arrays abstract and its numbers as they are) and
runs as its trace from then on: evaluated with NumPy on the host (bncheck.hostrun), or compiled and
vmapped beside the references on an accelerator (the engine).
A function that uses no JAX is NumPy code and keeps NumPy's semantics: it is never traced, since
JAX would run it differently (no in-place updates, no aliasing between arrays).

On the host a trace serves a family of shapes (_family): the sizes of 2 or more are JAX's symbolic
dimensions, so one trace stands for every draw whose sizes are alike but for their values, and a
sweep of 200 random shapes is a handful of traces, not 200. Where JAX or the function asked whether
two sizes are equal and JAX, unable to tell, took them for different (_equalities), the shapes where
they are equal are traced on their own; so is every shape of a function that needs a size as a number
(`range(ctx.N)`). An accelerator compiles one program a shape, so there each shape has its own trace.

Every guarantee of calling the function stays: the trace runs inside check.call like the call itself
(its timeout, its isolation), and wherever it cannot stand for the function the function is called as
it is, on that draw: a trace that raises (the user's exception and line are then reported by the call
itself), one whose output is not one array, one whose value the host evaluator cannot reproduce, and
for good a function that traces to a different program twice at the same shape (it reads a clock, a
counter or a random generator of its own, so its trace holds one call's value, not each call's) or
whose first trace does not give what calling it gives on the same ctx (_confirm: NumPy's in-place
updates and aliasing, which a trace does not see).
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import ml_dtypes
import numpy as np

from bncheck.compare import float_dtype
from bncheck.draws import Ctx
from bncheck.hostrun import evaluate, sized

# Libraries whose functions a derivation calls but that never read a ctx field by name: their code
# is not followed when looking for the fields a function reads.
LIBRARIES = ("numpy", "jax", "jaxlib", "ml_dtypes", "opt_einsum", "scipy", "math", "functools", "operator",
             "builtins", "itertools", "typing")
# The most items of a list, tuple, set or dict a function reaches that are followed one by one.
CONTAINER_ITEMS = 256
# Names through which code can reach any attribute of an object: a function that uses one reads
# whatever it likes, so all the fields come along.
_ANY_FIELD = frozenset({"getattr", "vars", "__dict__", "__getattribute__", "eval", "exec", "globals", "locals",
                        "attrgetter", "compile"})


def _library(obj: Any) -> bool:
    return _library_module(getattr(obj, "__module__", None) or getattr(obj, "__name__", ""))


def _library_module(module: Any) -> bool:
    return isinstance(module, str) and module.split(".")[0] in LIBRARIES


def _codes(code: types.CodeType) -> Iterable[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _holds_code(value: Any) -> bool:
    """Whether `value` can run code of the user's that this analysis does not read: a module, a class
    or an object of the user's (their functions and methods can read any ctx field); not a number, a
    string, an array or anything of a library's."""
    if _library(value):
        return False
    if isinstance(value, (types.ModuleType, type)):
        return True
    return not (type(value).__module__ == "builtins" or _library(type(value)))


def _reached(fns: Iterable[Callable]) -> tuple[set[str], list[Any], bool] | None:
    """The names and string constants in the code of `fns` and of every function they reach through
    their globals, closures and default arguments, and the containers among them (library code
    aside); the other objects reached (library modules and functions, values); and whether a module,
    class or object of the user's was reached, whose code can read any field. None when a reached
    callable's code cannot be read (a partial, a bound method, an object with __call__)."""
    names: set[str] = set()
    others: list[Any] = []
    opaque = False
    seen: set[int] = set()
    todo = list(fns)
    while todo:
        fn = todo.pop()
        fn = inspect.unwrap(fn) if isinstance(fn, types.FunctionType) else fn
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        if isinstance(fn, (tuple, list, set, frozenset, dict)):
            # A table of functions is followed; a long one (data, most likely) is not read item by
            # item, and anything may be in it.
            if len(fn) > CONTAINER_ITEMS:
                opaque = True
            else:
                todo.extend(fn.values() if isinstance(fn, dict) else fn)
            continue
        if not isinstance(fn, types.FunctionType) or _library(fn):
            if callable(fn) and not isinstance(fn, (types.BuiltinFunctionType, type)) and not _library(fn):
                return None  # a partial, a bound method, an object with __call__: code unseen
            opaque = opaque or _holds_code(fn)
            others.append(fn)
            continue
        for code in _codes(fn.__code__):
            names.update(code.co_names)
            names.update(c for c in code.co_consts if isinstance(c, str))
            todo.extend(fn.__globals__[name] for name in code.co_names if name in fn.__globals__)
        for cell in fn.__closure__ or ():
            try:
                todo.append(cell.cell_contents)
            except ValueError:  # an empty cell
                continue
        todo.extend(fn.__defaults__ or ())
        todo.extend((fn.__kwdefaults__ or {}).values())
    return names, others, opaque


def uses_jax(fn: Callable) -> bool:
    """Whether `fn`, or a function it reaches, names jax or something of jax's (see the docstring)."""
    reached = _reached([fn])
    if reached is None:
        return False

    def of_jax(value: Any) -> bool:
        name = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        return isinstance(name, str) and name.split(".")[0] in ("jax", "jaxlib")

    return any(of_jax(value) for value in reached[1])


def fields_read(fns: Iterable[Callable], fields: Iterable[str]) -> set[str] | None:
    """The ctx fields that `fns` can read, or None when that cannot be told from their code (then
    every field must be there). Conservative: any name or string in the code that is a field counts."""
    reached = _reached(fns)
    if reached is None:
        return None
    names, _, opaque = reached
    if opaque or names & _ANY_FIELD:
        return None
    return set(fields) & names


Spec = tuple  # (shape, dtype) of an array


@dataclass
class Trace:
    """One function traced at one shape: its jaxpr and consts, the ctx fields its inputs are, and the
    shape and dtype of the one array it returns."""

    jaxpr: Any
    consts: list
    fields: list[str]
    shape: tuple[int, ...]
    dtype: np.dtype
    # A family's trace (symbolic sizes): the equalities of sizes JAX or the function asked while
    # tracing and took as false (JAX cannot know; see _equalities), each a pair of sizes.
    undecided: list[tuple] = field(default_factory=list)

    def holds(self, sizes: dict[str, int]) -> bool:
        """Whether this family trace stands for the function at these sizes: every equality it took
        as false is false here."""
        memo: dict[int, int] = {}
        try:
            return not any(sized(a, sizes, memo) == sized(b, sizes, memo) for a, b in self.undecided)
        except Exception:  # noqa: BLE001 - a size JAX cannot evaluate: this shape is traced on its own
            return False


@dataclass
class Traced:
    """The functions of a derivation that use JAX, each traced once for each family of shapes (see the
    module docstring)."""

    functions: dict[str, Callable]
    names: set[str] = field(default_factory=set)  # the functions that use JAX
    traces: dict[tuple, Trace | None] = field(default_factory=dict)
    families: dict[tuple, Trace | None] = field(default_factory=dict)  # by _family's key
    # Functions found to trace to different programs at one shape: called as they are from then on.
    impure: set[str] = field(default_factory=set)
    checked: set[str] = field(default_factory=set)  # functions traced twice already
    # Functions whose trace gave what a call gives, on one ctx (_confirm).
    confirmed: set[str] = field(default_factory=set)
    # Functions that use JAX and were called as they are on some draw: eager jax.numpy, which compiles
    # each operation for each new shape (the sweep says so while it runs).
    eager: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, functions: dict[str, Callable]) -> Traced:
        return cls(dict(functions), {name for name, fn in functions.items() if uses_jax(fn)})

    def hosted(self) -> dict[str, Callable]:
        """Every function, those that use JAX replaced by their traces evaluated on the host."""
        return {name: self._hosted(name) if name in self.names else fn for name, fn in self.functions.items()}

    def trace(self, name: str, arrays: dict[str, Spec], static: dict[str, Any], directions: tuple[Spec, ...] = ()) -> Trace | None:
        """`name` traced with ctx arrays of these (shape, dtype), ctx numbers `static` and JVP
        directions of these (shape, dtype) (cached), or None where the trace cannot stand for it."""
        if name in self.impure:
            return None
        key = _key(name, arrays, static, directions)
        if key is None:  # a model's option that is no plain value: no cache key, so no trace
            return None
        if key not in self.traces:
            self.traces[key] = self._trace(name, arrays, static, directions)
        return None if name in self.impure else self.traces[key]

    def generic(self, name: str, arrays: dict[str, Spec], static: dict[str, Any],
                directions: tuple[Spec, ...] = ()) -> tuple[Trace, dict[str, int]] | None:
        """`name`'s trace for the family of these shapes (see _family), traced once with symbolic
        sizes, and the sizes of this member; None where no such trace stands for the function here
        (it cannot be traced with symbolic sizes, or it decided an equality of sizes that does not
        hold for this member: then it is traced at this member's shape)."""
        if _dimension_class() is None or name in self.impure:
            return None
        family = _family(name, arrays, static, directions)
        if family is None:
            return None
        key, sizes = family
        if key not in self.families:
            self.families[key] = self._trace(name, arrays, static, directions, sizes)
        found = self.families[key]
        if found is None or name in self.impure or not found.holds(sizes):
            return None
        return found, sizes

    def _trace(self, name: str, arrays: dict[str, Spec], static: dict, directions: tuple,
               sizes: dict[str, int] | None = None) -> Trace | None:
        """The trace at these shapes, or, given `sizes` (each symbol's value, from _family), the trace
        of their family: every size of 2 or more a symbol, and each ctx number equal to one of them
        that symbol too."""
        import jax
        from jax.extend.core import Literal

        fn = self.functions[name]
        decisions = _Decisions()
        try:
            shapes, numbers, turns, scope = _symbolic(arrays, static, directions, sizes) if sizes else (
                {k: s for k, (s, _) in arrays.items()}, static, [s for s, _ in directions], None)

            def traced(fields, *V):
                return fn(Ctx({**fields, **numbers}), *V)

            specs = ({k: jax.ShapeDtypeStruct(shapes[k], d) for k, (_, d) in arrays.items()},
                     *(jax.ShapeDtypeStruct(s, d) for s, (_, d) in zip(turns, directions)))
            # Without jit, the jitted jax.numpy functions it calls are traced inline rather than each
            # as a program of its own, whose bookkeeping costs more than the tracing (a sweep of
            # random shapes traces every function at every draw). The trace computes the same.
            with jax.disable_jit(), _equalities(decisions if sizes else None, scope):
                closed, out = jax.make_jaxpr(traced, return_shape=True)(*specs)
                # A function of its own: make_jaxpr would hand back its cached trace of `traced`.
                again = jax.make_jaxpr(lambda *a: traced(*a))(*specs) if name not in self.checked else closed
        except Exception:  # the call itself, on the draw, says what is wrong (or works eagerly)
            return None
        if again is not closed:
            self.checked.add(name)
            if str(again.jaxpr) != str(closed.jaxpr) or not _same(again.consts, closed.consts):
                self.impure.add(name)
                return None
        if not isinstance(out, jax.ShapeDtypeStruct) or any(isinstance(v, Literal) for v in closed.jaxpr.outvars):
            return None  # not one array (a tuple, a Python number): the call reports it as it is
        if decisions.read:
            return None  # a size hashed or formatted by the user's code: no equality tells (_equalities)
        # The trace's inputs are the ctx fields in the order JAX flattens a dict: its keys sorted.
        order = jax.tree_util.tree_leaves({k: k for k in arrays})
        # One equality of each kind is enough to look at: JAX asks the same ones many times.
        found = Trace(closed.jaxpr, list(closed.consts), order, tuple(out.shape), np.dtype(out.dtype),
                      list({(str(a), str(b)): (a, b) for a, b in decisions.unequal}.values()))
        # A family's trace is confirmed at a member it stands for (another is traced on its own).
        if name not in self.confirmed and (sizes is None or found.holds(sizes)):
            if not self._confirm(name, found, arrays, static, directions, sizes):
                self.impure.add(name)
                return None
            self.confirmed.add(name)
        return found

    def _confirm(self, name: str, found: Trace, arrays: dict[str, Spec], static: dict, directions: tuple,
                 sizes: dict[str, int] | None) -> bool:
        """Whether the function called as it is, on a read-only ctx of values in [0.5, 1.5] (no
        square root or log of a negative), gives what its trace gives on them. A tracer is no NumPy
        array: code that writes into an array in place (ctx's own, which a call refuses) or reads one
        through an alias it changed runs one way traced and another called, and is then called."""
        rng = np.random.default_rng(0)
        fields = {k: rng.uniform(0.5, 1.5, s).astype(d) for k, (s, d) in arrays.items()}
        V = [rng.uniform(0.5, 1.5, s).astype(d) for s, d in directions]
        try:
            with np.errstate(all="ignore"):
                called = _staged(self.functions[name], Ctx({**fields, **static}), V)
                if called is None:
                    called = self.functions[name](Ctx({**fields, **static}), *V)
                (traced,) = evaluate(found.jaxpr, found.consts, [fields[f] for f in found.fields] + V, sizes)
            called = np.asarray(called)
        except Exception:  # noqa: BLE001 - raised when called: then it is called on every draw, and says so
            return False
        if called.shape != traced.shape:
            return False
        called, traced = called.astype(np.float64), traced.astype(np.float64)
        # Rounding apart (two programs, one value): a square root of the dtype's epsilon, relative.
        rounding = float(np.sqrt(ml_dtypes.finfo(found.dtype).eps)) if float_dtype(found.dtype) else 0.0
        scale = float(np.abs(traced).max(initial=0.0))
        return bool(np.all(np.isnan(called) == np.isnan(traced))
                    and np.nanmax(np.abs(called - traced), initial=0.0) <= rounding * scale)

    def replayed(self) -> dict[str, Callable]:
        """The functions that use JAX as their traces, for a JAX program to call (Engine.derived):
        each replays the trace made at its ctx's shapes, and none calls the user's function, which
        runs only inside check.call (its timeout, its isolation). A shape not traced yet raises
        LookupError."""
        return {name: self._replayed(name) for name in self.names}

    def _replayed(self, name: str) -> Callable:
        def replayed(ctx: Ctx, *directions):
            import jax

            values = vars(ctx)
            arrays = {k: (v.shape, v.dtype) for k, v in values.items() if isinstance(v, (np.ndarray, jax.Array))}
            static = {k: v for k, v in values.items() if k not in arrays}
            trace = None if name in self.impure else self.traces.get(
                _key(name, arrays, static, tuple((V.shape, V.dtype) for V in directions)))
            if trace is None:
                raise LookupError(f"{name} has no trace at these shapes")
            (value,) = jax.core.eval_jaxpr(trace.jaxpr, trace.consts, *(values[f] for f in trace.fields), *directions)
            return value

        return replayed

    def _hosted(self, name: str) -> Callable:
        fn = self.functions[name]

        def hosted(ctx: Ctx, *directions):
            values = vars(ctx)
            arrays = {k: (v.shape, v.dtype) for k, v in values.items() if isinstance(v, np.ndarray)}
            static = {k: v for k, v in values.items() if k not in arrays}
            turns = tuple((V.shape, V.dtype) for V in directions)
            trace, sizes = self.generic(name, arrays, static, turns) or (self.trace(name, arrays, static, turns), None)
            if trace is not None:
                try:
                    (value,) = evaluate(trace.jaxpr, trace.consts, [values[f] for f in trace.fields] + list(directions),
                                        sizes)
                    return value
                except Exception:  # the evaluator's failure, not the function's: the function decides
                    pass
            self.eager.add(name)
            return fn(ctx, *directions)

        return hosted


def _staged(fn: Callable, ctx: Ctx, V: list) -> np.ndarray | None:
    """What calling `fn` on this ctx gives, its NumPy operations run as they are (on NumPy arrays:
    in place, aliased) and its JAX operations staged, as a trace stages them, and evaluated here;
    None where the call cannot be staged (it reads a JAX value, or returns no one array).

    Called eagerly instead, each JAX operation would be compiled for this call alone: about 0.15 s a
    function of the seed network, as much as tracing and evaluating it on a whole default sweep."""
    import jax

    try:
        with jax.disable_jit():
            closed = jax.make_jaxpr(lambda: fn(ctx, *V))()
        values = evaluate(closed.jaxpr, closed.consts, [])
    except Exception:  # noqa: BLE001 - a call that reads a value or fails: then it is called as it is
        return None
    return values[0] if len(values) == 1 else None


# --- families of shapes: one trace for every shape alike but for its sizes --------------------------


def _is_size(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _family(name: str, arrays: dict[str, Spec], static: dict, directions: tuple) -> tuple[tuple, dict[str, int]] | None:
    """The family of these shapes, as a key, and the size each of its symbols has here; None where
    there is none (no size of 2 or more, a ctx number that is no plain value).

    Every distinct size of 2 or more is a symbol (s0, s1, ... in the order the arrays meet them), a
    ctx number equal to one of them is that symbol, and 0 and 1 stay numbers. Shapes are of one
    family when the same axes and ctx numbers are the same symbol and the rest is equal: a random
    sweep's draws fall into a handful of families (most in the one where every size differs and
    none is 1), where each would be a shape of its own."""
    symbols: dict[int, str] = {}

    def axes(shape: tuple) -> tuple:
        return tuple(symbols.setdefault(int(n), f"s{len(symbols)}") if n >= 2 else int(n) for n in shape)

    fields = tuple((k, axes(s), np.dtype(d).str) for k, (s, d) in arrays.items())
    turns = tuple((axes(s), np.dtype(d).str) for s, d in directions)
    if not symbols:
        return None
    numbers = tuple((k, ("size", symbols[int(v)]) if _is_size(v) and int(v) in symbols else ("value", v))
                    for k, v in static.items())
    key = (name, fields, turns, numbers)
    try:
        hash(key)
    except TypeError:
        return None
    return key, {symbol: n for n, symbol in symbols.items()}


def _symbolic(arrays: dict[str, Spec], static: dict, directions: tuple,
              sizes: dict[str, int]) -> tuple[dict, dict, list, Any]:
    """The shapes of the arrays, the ctx numbers and the directions' shapes of a family (_family),
    its symbols JAX's symbolic sizes, each known to be 2 or more; and the symbols' scope."""
    import jax

    names = list(sizes)
    dims = jax.export.symbolic_shape(", ".join(names), constraints=[f"{n} >= 2" for n in names])
    of = {sizes[n]: d for n, d in zip(names, dims)}

    def shape(s: tuple) -> tuple:
        return tuple(of[int(n)] if n >= 2 else int(n) for n in s)

    numbers = {k: of[int(v)] if _is_size(v) and int(v) in of else v for k, v in static.items()}
    return {k: shape(s) for k, (s, _) in arrays.items()}, numbers, [shape(s) for s, _ in directions], dims[0].scope


@functools.cache
def _dimension_class() -> type | None:
    """JAX's class of symbolic sizes where it has what a family trace needs (symbolic shapes, their
    evaluation and their equality); None otherwise, and then every shape is traced on its own."""
    try:
        import jax

        cls = type(jax.export.symbolic_shape("a")[0])
    except Exception:  # noqa: BLE001 - a JAX without symbolic shapes
        return None
    needs = (callable(getattr(cls, "_evaluate", None)) and hasattr(cls, "scope") and "__bool__" not in vars(cls)
             and all(name in vars(cls) for name in ("__eq__", "__hash__", "__str__", "__repr__")))
    return cls if needs else None


@dataclass
class _Decisions:
    """What was decided about a family trace's symbolic sizes while tracing (_equalities): the
    equalities taken as false, each a pair, and whether the user's code read a size otherwise (its
    hash, its text), where no equality shows what it was told."""

    unequal: list[tuple] = field(default_factory=list)
    read: bool = False


@contextmanager
def _equalities(decisions: _Decisions | None, scope: Any = None):
    """Notes in `decisions` each equality of `scope`'s symbolic sizes taken as false while in this
    block (sizes of other scopes are those JAX's caches hold from earlier traces), and whether the
    user's code read one by its hash or its text.

    JAX cannot always tell whether a symbolic size equals something (is s0 equal to 3? to s1 - 1? to
    jnp.int32(3)?) and then answers false, its documented unsound choice: a trace made so holds only
    where that is so. A function with `if ctx.N == 3` traces to its other branch; so does JAX's own
    broadcasting when a size is 1. A size used as a truth value (`if ctx.N % 2:`) is true, as for any
    object: that is `ctx.N % 2 == 0` taken as false. Each noted pair is checked against a member's
    sizes before the trace stands for it (Trace.holds). A size looked up in a set or a dict (`ctx.N in
    {2, 3}`) is compared only where its hash matches, and its text is its symbol's name ("s0"): no
    equality is seen, and a family trace of user code that hashes or formats one is not used."""
    cls = _dimension_class()
    if decisions is None or cls is None:
        yield
        return
    original = {name: vars(cls)[name] for name in ("__eq__", "__hash__", "__str__", "__repr__")}

    def __eq__(self, other):
        equal = original["__eq__"](self, other)
        if not equal and self.scope is scope and getattr(other, "scope", scope) is scope:
            decisions.unequal.append((self, other))
        return equal

    def __bool__(self):
        if self.scope is scope:
            decisions.unequal.append((self, 0))
        return True

    def read(name: str) -> Callable:
        def reader(self):
            if self.scope is scope and not _library_frame(sys._getframe(1)):
                decisions.read = True
            return original[name](self)

        return reader

    for name in ("__hash__", "__str__", "__repr__"):
        setattr(cls, name, read(name))
    cls.__eq__, cls.__bool__ = __eq__, __bool__
    try:
        yield
    finally:
        for name, method in original.items():
            setattr(cls, name, method)
        del cls.__bool__


def _library_frame(frame: types.FrameType) -> bool:
    """Whether `frame` runs code of a library's or of bncheck's (JAX hashes sizes for its caches)."""
    module = frame.f_globals.get("__name__", "")
    return _library_module(module) or module.split(".")[0] == "bncheck"


def _key(name: str, arrays: dict[str, Spec], static: dict, directions: tuple) -> tuple | None:
    """The cache key of a trace, or None where a ctx number is no plain (hashable) value."""
    key = (name, tuple((k, tuple(s), np.dtype(d).str) for k, (s, d) in arrays.items()),
           tuple((tuple(s), np.dtype(d).str) for s, d in directions), tuple(static.items()))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True) for x, y in zip(a, b))
