"""A JAX custom rule (`jax.custom_vjp`, `jax.custom_jvp`) checked against autodiff of its own primal.

A rule f is turned into a model and a derivation, so that the sweep, the comparison, the diagnosis and
the report of `verify` apply to it unchanged:

- the model's inputs are f's arguments named in `shapes` (their dimensions swept over `dims`) and a
  cotangent `dout` shaped like f's output; its forward is f's primal, the function without its rule
  (`f.fun`), and its loss R = sum(out ⊙ dout), so that ∂R/∂x is the primal's VJP of dout;
- custom_vjp: check `vjp_<arg>` is the rule's product `jax.vjp(f, *args)[1](dout)` for that argument,
  against jax.grad of R through the primal;
- custom_jvp: check `jvp_<arg>` is the rule's tangent `jax.jvp(f, args, tangents)[1]` along a random
  direction V of that argument (zeros for the others), against jax.jvp of the primal along V;
- check `primal`: the primal output the rule returns (fwd's for custom_vjp, the jvp rule's for
  custom_jvp), which JAX uses in place of f's own wherever f is differentiated, against f's; its
  reference is ∂R/∂dout, which is f's output.

dout and the directions V are standard-normal draws, never ones: a rule that forgets its cotangent
(or tangent) would pass against ones. An output that is not one
array (a tuple, a dict of arrays) is checked as its leaves raveled and joined into one vector.

The rule runs as written, eagerly; the primal is differentiated by JAX inside the sweep's compiled
reference programs. A nested custom rule inside the primal keeps its own rule: only f's is taken away.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from bncheck.errors import LoadError, SettingsError
from bncheck.loader import Derivation
from bncheck.models import Check
from bncheck.userfile import import_user_file, user_frame
from bncheck.models import Model, concrete

# A dimension `dims` does not name is swept over this inclusive range.
DEFAULT_RANGE = (1, 16)
# The settings of verify that apply to a rule (its own model has no options, and every check is defined).
SETTINGS = (
    "trials", "seed", "shape", "dtype", "device", "rtol", "atol", "max_memory_mb", "timeout", "reference",
    "json", "junit",
)

Shapes = dict[str, tuple[str | int, ...]]


@dataclass(frozen=True)
class Rule:
    """A custom rule and how its arguments are given."""

    func: Any  # the jax.custom_vjp or jax.custom_jvp object
    kind: str  # "custom_vjp" | "custom_jvp"
    name: str  # as the user named it: FILE.py:FUNC, or the function's qualified name
    file: str  # the user's file, whose frames a traceback shows
    shapes: Shapes  # argument -> its dimensions (a name, or a fixed size), in the order given
    # A primal taking *args has no names to match: its arguments go by position, in the order of shapes.
    by_position: bool
    spec: str | None  # FILE.py:FUNC, for a replay command; None for a function given in Python

    def call(self, fn: Callable, arrays: Mapping[str, Any]) -> Any:
        if self.by_position:
            return fn(*(arrays[a] for a in self.shapes))
        return fn(**{a: arrays[a] for a in self.shapes})

    @property
    def primal(self) -> Callable:
        return self.func.fun

    def shapes_text(self) -> str:
        """shapes as --shapes writes them: "x=N,D g=D" (a scalar: "s=")."""
        return " ".join(f"{a}={','.join(map(str, dims))}" for a, dims in self.shapes.items())


# ---- reading what the user gave --------------------------------------------------------------------


def parse_shapes(text: str) -> Shapes:
    """`"x=N,D g=D s="` -> {"x": ("N", "D"), "g": ("D",), "s": ()}; a number is a fixed size."""
    shapes: dict[str, list[str]] = {}
    # Arguments apart by spaces (or ;), their dimensions by commas, spaces around a comma forgiven.
    for part in filter(None, re.split(r"[;\s]+", re.sub(r"\s*,\s*", ",", text.strip()))):
        name, sep, dims = part.partition("=")
        if not sep:
            raise SettingsError(f"shapes: cannot parse {part!r} in {text!r}; expected ARG=DIM,DIM ... such as x=N,D g=D (s= for a scalar)")
        if name in shapes:
            raise SettingsError(f"shapes: {name} is given twice in {text!r}")
        shapes[name] = [d.strip() for d in dims.split(",") if d.strip() and d.strip() != "()"]
    if not shapes:
        raise SettingsError(f"shapes: {text!r} names no argument; expected ARG=DIM,DIM ... such as x=N,D g=D")
    return checked_shapes({name: tuple(int(d) if d.isdigit() else d for d in dims) for name, dims in shapes.items()})


def checked_shapes(shapes: Any) -> Shapes:
    """shapes as check_rule takes it, {argument: (dimension name or size, ...)}, validated."""
    if not isinstance(shapes, Mapping) or not shapes:
        raise SettingsError(f"shapes: must map each argument to its dimensions, such as {{'x': ('N', 'D')}}, got {shapes!r}")
    out: Shapes = {}
    for name, dims in shapes.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise SettingsError(f"shapes: {name!r} is no argument name")
        if isinstance(dims, str) or not isinstance(dims, (tuple, list)):
            raise SettingsError(f"shapes: {name}'s dimensions must be a tuple such as ('N', 'D'), got {dims!r}")
        for d in dims:
            fixed = isinstance(d, int) and not isinstance(d, bool)
            if not (fixed and d >= 1) and not (isinstance(d, str) and d.isidentifier()):
                raise SettingsError(f"shapes: {name}'s dimension {d!r} is neither a name such as N nor a size >= 1")
        out[name] = tuple(dims)
    return out


def parse_dims(text: str) -> dict[str, tuple[int, int]]:
    """`"N=2:64,D=1:32"` -> {"N": (2, 64), "D": (1, 32)}; `N=8` is N=8:8."""
    dims: dict[str, tuple[int, int]] = {}
    for part in filter(None, re.split(r"[,;\s]+", text)):
        name, sep, bounds = part.partition("=")
        lo, colon, hi = bounds.partition(":")
        hi = hi if colon else lo
        if not sep or not name.strip() or not all(v.strip().lstrip("-").isdigit() for v in (lo, hi)):
            raise SettingsError(f"dims: cannot parse {part!r} in {text!r}; expected NAME=MIN:MAX,... such as N=2:64,D=1:32")
        dims[name.strip()] = (int(lo), int(hi))
    if not dims:
        raise SettingsError(f"dims: {text!r} names no dimension; expected NAME=MIN:MAX,... such as N=2:64,D=1:32")
    return dims


def _ranges(dims: Any, shapes: Shapes) -> dict[str, tuple[int, int]]:
    """The sweep's inclusive range of each dimension shapes names: from dims, else DEFAULT_RANGE."""
    named = list(dict.fromkeys(d for ds in shapes.values() for d in ds if isinstance(d, str)))
    given = parse_dims(dims) if isinstance(dims, str) else dict(dims or {})
    unknown = [name for name in given if name not in named]
    if unknown:
        raise SettingsError(f"dims: {', '.join(map(str, unknown))} is no dimension of the shapes (they name: {', '.join(named) or 'none'})")
    ranges = {}
    for name in named:
        bounds = given.get(name, DEFAULT_RANGE)
        if isinstance(bounds, int) and not isinstance(bounds, bool):
            bounds = (bounds, bounds)
        if (not isinstance(bounds, (tuple, list)) or len(bounds) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in bounds)):
            raise SettingsError(f"dims: {name} must be an inclusive range (min, max) of two integers, got {bounds!r}")
        lo, hi = bounds
        if not 1 <= lo <= hi:
            raise SettingsError(f"dims: {name} = {lo}:{hi} must have 1 <= min <= max")
        ranges[name] = (lo, hi)
    return ranges


def split_spec(spec: str) -> tuple[Path, str]:
    """FILE.py:FUNC -> (FILE.py, FUNC)."""
    path, sep, attr = spec.rpartition(":")
    if not sep or not path or not attr:
        raise LoadError(f"rule: {spec!r} names no function; give FILE.py:FUNC, such as rules.py:logsumexp")
    return Path(path), attr


def _load(spec: str) -> tuple[Any, str]:
    """The object FILE.py:FUNC names (FUNC may be dotted, e.g. layers.softplus), and the file."""
    path, attr = split_spec(spec)
    found: Any = import_user_file(path, "rule", "bncheck_rule")
    for part in attr.split("."):
        if not hasattr(found, part):
            raise LoadError(f"rule: {path} defines no {attr}")
        found = getattr(found, part)
    return found, str(path)


def _custom(func: Any, name: str) -> tuple[Any, str]:
    """The custom_vjp or custom_jvp object behind func, and its kind. Through jax.jit and other wrappers
    that keep `__wrapped__` (functools.wraps): the rule checked is the one they wrap."""
    import jax

    seen = func
    while seen is not None:
        if isinstance(seen, jax.custom_vjp):
            if seen.fwd is None or seen.bwd is None:
                raise LoadError(f"rule: {name} is a jax.custom_vjp with no rule yet; call {name}.defvjp(fwd, bwd) in its file")
            return seen, "custom_vjp"
        if isinstance(seen, jax.custom_jvp):
            if seen.jvp is None:
                raise LoadError(f"rule: {name} is a jax.custom_jvp with no rule yet; call {name}.defjvp(jvp) in its file")
            return seen, "custom_jvp"
        seen = getattr(seen, "__wrapped__", None)
    what = type(func).__name__
    raise LoadError(
        f"rule: {name} is a {what}, not a function decorated with jax.custom_vjp or jax.custom_jvp; "
        f"check a plain function's hand-written gradient with `bncheck verify`"
    )


def make_rule(func: Any, shapes: Shapes, name: str, file: str | None, spec: str | None) -> Rule:
    """The Rule of func, its arguments matched with shapes: every argument f needs is given a shape or
    has a default, and none given is one JAX cannot differentiate as a float array. Without `file`,
    the file that defines f's primal."""
    custom, kind = _custom(func, name)
    if file is None:
        try:
            file = inspect.getsourcefile(custom.fun) or ""
        except TypeError:  # a builtin: no file of the user's to show frames of
            file = ""
    try:
        params = inspect.signature(custom.fun).parameters
    except (TypeError, ValueError):  # a builtin or C function: no names to match
        params = {}
    by_position = not params or any(p.kind is p.VAR_POSITIONAL for p in params.values())
    if not by_position:
        unknown = [a for a in shapes if a not in params]
        if unknown:
            raise SettingsError(f"shapes: {name} has no argument {', '.join(unknown)} (its arguments: {', '.join(params)})")
        needed = [p for p in params.values() if p.name not in shapes and p.default is p.empty
                  and p.kind not in (p.VAR_KEYWORD,)]
        if needed:
            raise SettingsError(
                f"shapes: {name}'s argument {', '.join(p.name for p in needed)} has no shape and no default; "
                f"give it one, such as {needed[0].name}=N,D"
            )
        for position, p in enumerate(params.values()):
            if p.name not in shapes:
                continue
            if position in custom.nondiff_argnums:
                raise SettingsError(
                    f"shapes: {name}'s argument {p.name} is in nondiff_argnums, so the rule does not differentiate it; "
                    f"leave it out of the shapes (it keeps its default)"
                )
            if p.kind is p.KEYWORD_ONLY:
                raise SettingsError(f"shapes: {name}'s argument {p.name} is keyword-only; {kind} passes arguments by position")
            if p.annotation in (int, bool, "int", "bool"):
                raise SettingsError(
                    f"shapes: {name}'s argument {p.name} is annotated {getattr(p.annotation, '__name__', p.annotation)}; bncheck draws "
                    f"float arrays for the arguments it differentiates, so leave {p.name} out of the shapes (it keeps its default)"
                )
    taken = set(shapes) & {d for ds in shapes.values() for d in ds if isinstance(d, str)}
    if taken:
        raise SettingsError(f"shapes: {', '.join(sorted(taken))} names both an argument and a dimension; rename the dimension")
    if "R" in shapes or any("R" in ds for ds in shapes.values()):
        raise SettingsError("shapes: R is the loss sum(out * dout) bncheck differentiates; name the argument or dimension otherwise")
    return Rule(custom, kind, name, file, shapes, by_position, spec)


def _free(base: str, taken: set[str]) -> str:
    while base in taken:
        base += "_"
    return base


# ---- the rule as a model and a derivation ----------------------------------------------------------


def _flat(out: Any):
    """f's output as one array: itself, or a pytree's leaves raveled and joined."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(out)):
        return jnp.asarray(out)
    return ravel_pytree(out)[0]


def _cotangent(out: Any, dout: Any) -> Any:
    """dout (shaped like _flat(out)) in out's own structure, as the rule's bwd takes it."""
    import jax
    from jax.flatten_util import ravel_pytree

    if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(out)):
        return dout
    return ravel_pytree(out)[1](dout)


def _distinct(ranges: Mapping[str, tuple[int, int]]) -> dict[str, int]:
    """A size for each dimension within its range, different from the others' and from 1 where the
    ranges allow: two dimensions the shapes name apart but the function mixes up (or broadcasts
    against each other) fail there, where at the smallest sizes they could coincide."""
    used: set[int] = set()
    sizes = {}
    for name, (lo, hi) in ranges.items():
        free = [n for n in range(max(lo, 2), min(hi, lo + len(ranges) + 2) + 1) if n not in used]
        sizes[name] = free[0] if free else hi
        used.add(sizes[name])
    return sizes


def rule_model(rule: Rule, ranges: Mapping[str, tuple[int, int]], first: Mapping[str, int],
               fixed: bool = False) -> tuple[Model, str, str]:
    """The model of a rule (see the module docstring) and the names of its output and cotangent.

    The primal is traced (no FLOPs) at the dims `first` and, unless the shape is `fixed`, at distinct
    sizes (_distinct), and differentiated at `first`; a primal that cannot be run or differentiated at
    a shape the sweep draws, or whose output is not float, is a one-line LoadError."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    taken = set(rule.shapes) | set(ranges) | {"R"}
    out_name = _free("out", taken)
    cot = _free("dout", taken | {out_name})
    found: dict[tuple, Any] = {}

    def structs(d: Mapping[str, int]) -> dict[str, Any]:
        return {a: jax.ShapeDtypeStruct(concrete(s, d), np.float64) for a, s in rule.shapes.items()}

    def fail(what: str, err: Exception, d: Mapping[str, int], hint: str) -> LoadError:
        frame = user_frame(err, rule.file)
        at = f" at {rule.file}:{frame.lineno}" if frame else ""
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        shapes = ", ".join(f"{a} {concrete(s, d)}" for a, s in rule.shapes.items())
        return LoadError(f"rule: {rule.name}: {what} raised {type(err).__name__}{at} with {shapes}: {first_line} ({hint})")

    def traced(d: Mapping[str, int]) -> Any:
        """The primal's output at d as shapes and dtypes."""
        key = tuple(sorted(d.items()))
        if key not in found:
            try:
                found[key] = jax.eval_shape(lambda a: rule.call(rule.primal, a), structs(d))
            except Exception as err:
                raise fail("its primal", err, d, f"do the shapes match {rule.name}'s arguments?") from None
        return found[key]

    def out_shape(d: Mapping[str, int]) -> tuple[int, ...]:
        out = traced(d)
        return tuple(out.shape) if single else (sum(leaf.size for leaf in jax.tree_util.tree_leaves(out)),)

    out = traced(first)
    single = jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(out))
    for leaf in jax.tree_util.tree_leaves(out):
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise LoadError(f"rule: {rule.name} returns {leaf.dtype} values; bncheck checks rules of functions with float outputs")
    if not jax.tree_util.tree_leaves(out):
        raise LoadError(f"rule: {rule.name} returns no array")
    if not fixed:
        traced(_distinct(ranges))

    def forward(cfg, masks, **arrays):
        value = _flat(rule.call(rule.primal, arrays))
        return {"R": jnp.sum(value * arrays[cot]), out_name: value}

    def inputs(d: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
        return {**{a: concrete(s, d) for a, s in rule.shapes.items()}, cot: out_shape(d)}

    if rule.kind == "custom_vjp":
        checks = tuple(f"vjp_{a}" for a in rule.shapes)
    else:
        checks = tuple(f"jvp_{a}" for a in rule.shapes)
    model = Model(
        name=rule.kind,
        summary=f"{rule.name}: its {rule.kind} rule against autodiff of its primal",
        dims=dict(ranges),
        inputs=inputs,
        params=lambda d: {},
        forward=forward,
        outputs={out_name: f"{rule.name}'s output" + ("" if single else ", its leaves raveled and joined")},
        checks=(*checks, "primal"),
        file=rule.file,
    )
    arrays = {**structs(first), cot: jax.ShapeDtypeStruct(out_shape(first), np.float64)}
    try:
        if rule.kind == "custom_vjp":
            jax.eval_shape(jax.grad(lambda a: forward({}, {}, **a)["R"]), arrays)
        else:
            jax.eval_shape(lambda a: jax.jvp(lambda b: forward({}, {}, **b)[out_name], (a,), (a,)), arrays)
    except Exception as err:
        how = "jax.grad" if rule.kind == "custom_vjp" else "jax.jvp"
        raise fail(f"differentiating its primal with {how}", err, first,
                   f"the reference is {how} of the primal, so a primal {how} cannot differentiate cannot be checked") from None
    return model, out_name, cot


def rule_derivation(rule: Rule, out_name: str, cot: str) -> Derivation:
    """The rule's side of each check: functions of ctx (and V), as a derivation's are."""
    import jax
    import jax.numpy as jnp

    args = list(rule.shapes)

    def f(*xs):
        return rule.call(rule.func, dict(zip(args, xs)))

    def primals(ctx) -> tuple:
        return tuple(getattr(ctx, a) for a in args)

    functions: dict[str, Callable] = {}
    checks: dict[str, Check] = {}
    if rule.kind == "custom_vjp":
        def vjp_of(i: int) -> Callable:
            def vjp(ctx):
                out, pullback = jax.vjp(f, *primals(ctx))
                return pullback(_cotangent(out, getattr(ctx, cot)))[i]
            return vjp

        for i, a in enumerate(args):
            functions[f"vjp_{a}"], checks[f"vjp_{a}"] = vjp_of(i), Check(f"vjp_{a}", "gradient", a)

        def primal(ctx):
            return _flat(jax.vjp(f, *primals(ctx))[0])
    else:
        def jvp_of(i: int) -> Callable:
            def jvp(ctx, V):
                xs = primals(ctx)
                tangents = tuple(jnp.asarray(V, x.dtype) if j == i else jnp.zeros_like(x) for j, x in enumerate(xs))
                return _flat(jax.jvp(f, xs, tangents)[1])
            return jvp

        for i, a in enumerate(args):
            functions[f"jvp_{a}"], checks[f"jvp_{a}"] = jvp_of(i), Check(f"jvp_{a}", "jvp", a, out_name)

        def primal(ctx):
            xs = primals(ctx)
            return _flat(jax.jvp(f, xs, tuple(jnp.zeros_like(x) for x in xs))[0])

    # ∂R/∂dout is the primal's output: the primal output the rule gives is checked as that gradient.
    functions["primal"], checks["primal"] = primal, Check("primal", "gradient", cot)
    return Derivation(name=rule.name, file=rule.file, functions=functions, checks=checks)


# ---- settings, the run and its report --------------------------------------------------------------


def rule_settings(ranges: dict[str, tuple[int, int]], flags: Mapping[str, Any]):
    """verify's settings for a rule: those SETTINGS names, validated as verify validates them, and the
    sweep over `ranges` (or one fixed `shape`). The model is named when the rule's kind is known."""
    from bncheck.settings import parse_shape, resolve

    unknown = [k for k in flags if k not in SETTINGS]
    if unknown:
        raise SettingsError(f"{unknown[0]}: no setting of a rule check; its settings are {', '.join(SETTINGS)}")
    given = {k: v for k, v in flags.items() if v is not None and k != "shape"}
    settings = resolve(given)
    shape = flags.get("shape")
    fixed = None
    if shape is not None:
        fixed = parse_shape(",".join(f"{k}={v}" for k, v in shape.items()) if isinstance(shape, Mapping) else str(shape))
        unknown = [d for d in fixed if d not in ranges]
        if unknown:
            raise SettingsError(f"shape: {', '.join(unknown)} is no dimension of the shapes (they name: {', '.join(ranges) or 'none'})")
        missing = [d for d in ranges if d not in fixed]
        if missing:
            raise SettingsError(f"shape: missing {', '.join(missing)} (the shapes name {', '.join(ranges)})")
        for d, size in fixed.items():
            if size < 1:
                raise SettingsError(f"shape: {d}={size} must be at least 1")
        fixed = {d: fixed[d] for d in ranges}
    return dataclasses.replace(settings, sweep=dict(ranges), shape=fixed, require=())


def _replay(rule: Rule, settings, at: dict[str, Any]) -> str:
    """The command (or the Python call) that checks the one draw `at` again."""
    from bncheck.compare import TOLERANCES

    flags: dict[str, Any] = {}
    if at["shape"]:
        flags["shape"] = ",".join(f"{k}={v}" for k, v in at["shape"].items())
    flags.update(seed=at["seed"], trials=1, dtype=settings.dtype)
    if settings.dtype != "float64" or settings.rtol != TOLERANCES[settings.dtype].rtol:
        flags["rtol"] = settings.rtol
    if settings.atol != TOLERANCES[settings.dtype].atol:
        flags["atol"] = settings.atol
    if rule.spec is None:
        shape = f"shape={dict(at['shape'])!r}, " if at["shape"] else ""
        rest = ", ".join(f"{k}={v!r}" for k, v in flags.items() if k != "shape")
        return f"check_rule({rule.name}, shapes={dict(rule.shapes)!r}, {shape}{rest})"
    args = ["bncheck", "verify-rule", rule.spec, "--shapes", rule.shapes_text()]
    for key, value in flags.items():
        args += [f"--{key}", repr(value) if isinstance(value, float) else str(value)]
    return shlex.join(args)


_REFERENCES = {"custom_vjp": "jax.vjp of the primal", "custom_jvp": "jax.jvp of the primal"}


def _presented(report, rule: Rule, settings):
    """The report in the rule's terms: replays of verify-rule, references named after the primal."""
    # The settings a rule reads: the model options of verify's report (activation, ddof, ...) are not its.
    report.settings = {key: value for key, value in report.settings.items() if key in (*SETTINGS, "model", "sweep")}
    report.settings["shapes"] = {a: list(dims) for a, dims in rule.shapes.items()}
    for c in report.checks:
        if c.replay is not None:
            c.replay = _replay(rule, settings, c.smallest or c.worst)
        if c.reference is not None:
            named = "the primal's output" if c.name == "primal" else _REFERENCES[rule.kind]
            if c.references is not None:
                c.references = {named if key == c.reference else key: agrees for key, agrees in c.references.items()}
            c.reference = named
    return report


def verify_rule(
    func: Any,
    shapes: Shapes | str,
    dims: Mapping[str, Any] | str | None = None,
    *,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    on_phase: Callable[[str], None] = lambda text: None,
    **flags: Any,
):
    """(report, settings) of check_rule; the command line writes its reports from the settings."""
    from bncheck.engine import scope
    from bncheck.pipeline import check
    from bncheck.userfile import guarded, put_back

    shapes = parse_shapes(shapes) if isinstance(shapes, str) else checked_shapes(shapes)
    ranges = _ranges(dims, shapes)
    settings = rule_settings(ranges, flags)
    # From the import of the user's file to the report: see userfile.guarded.
    with guarded():
        if isinstance(func, str):
            spec, name = func, func
            func, file = _load(spec)
            put_back()
        else:
            spec, file = None, None
            name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or type(func).__name__
        rule = make_rule(func, shapes, name, file, spec)
        settings = dataclasses.replace(settings, model=rule.kind)
        first = dict(settings.shape) if settings.shape is not None else {d: lo for d, (lo, _) in ranges.items()}
        with scope(settings.device):
            model, out_name, cot = rule_model(rule, ranges, first, fixed=settings.shape is not None)
            report = check(model, settings, rule_derivation(rule, out_name, cot), on_progress=on_progress, on_phase=on_phase)
    return _presented(report, rule, settings), settings


def check_rule(
    func: Any,
    shapes: Shapes | str,
    dims: Mapping[str, Any] | str | None = None,
    **settings: Any,
):
    """Checks a jax.custom_vjp or jax.custom_jvp function's rule against autodiff of its primal.

        report = check_rule(logsumexp, shapes={"x": ("N", "D")}, dims={"N": (2, 64), "D": (1, 32)}, trials=50)
        assert report.passed, report

    `func` is the function (or "FILE.py:FUNC"); `shapes` names each argument's dimensions (a number
    is a fixed size, () a scalar); `dims` their inclusive sweep ranges, (1, 16) for any not given;
    settings are verify's (trials, seed, shape, dtype, rtol, atol, ...). Returns the Report: one check
    vjp_<arg> or jvp_<arg> per argument, and `primal`. Raises BncheckError when the rule cannot be run.
    """
    return verify_rule(func, shapes, dims, **settings)[0]

