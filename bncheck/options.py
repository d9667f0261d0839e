"""Every setting bncheck has, in one table: its name, type, default, domain, help and group.

From this table come the Settings fields and their defaults (bncheck.settings), the keys a config file
may hold and their types, the validation of each value with a message naming the bound it broke, the
command-line options of every command and their help (bncheck.cli), the flags of a replay command,
and the settings a model may read (`options` in a model module: the table's "option" group).

Adding a setting is one entry here; a model option is one entry here plus the model's own file, which
names it in its OPTIONS and reads it from `options` in forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bncheck.compare import TOLERANCES

ACTIVATIONS = ("relu", "tanh", "sigmoid", "softplus", "identity")
DTYPES = ("float64", "float32", "bfloat16", "float16")
DEVICES = ("cpu", "gpu", "auto")
# autodiff: jax.grad / jax.jacfwd / jax.jvp alone; fd: central differences as well, on a few draws.
REFERENCES = ("autodiff", "fd")
# The largest size of a dimension: the largest axis an int32 index reaches.
MAX_SIZE = 2**31 - 1
# A billion draws would take weeks; a larger number is a slip of the keyboard.
MAX_TRIALS = 10**9
# A memory budget past a petabyte is no budget, and overflows a float once counted in bytes.
MAX_MB = 2**30

# The groups, in the order `--help` lists them:
#   model      which model, and its number of outputs k
#   option     the settings a model reads (Model.options); each model reads its own
#   draws      how many draws, from which seed, at which shape
#   run        how the references are computed and the derivation is called
#   tolerance  when a draw passes
#   report     what must be defined, and where the reports go
GROUPS = ("model", "option", "draws", "run", "tolerance", "report")
SWEPT_HELP = "A range LO:HI (e.g. 0:2) sweeps it: the draws are shared among its values."


@dataclass(frozen=True)
class Option:
    name: str
    kind: type  # str, int or float
    default: Any
    help: str
    group: str
    choices: tuple = ()
    low: float | None = None  # inclusive bounds
    high: float | None = None
    positive: bool = False  # > 0
    shown: str | None = None  # the default as --help says it, where it is not `default` itself
    # A model option that shapes the computation (a padding, a window): it takes a range LO:HI too,
    # and the run's draws are shared among its values (bncheck.settings, bncheck.pipeline).
    sweepable: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def flag_kind(self) -> type:
        """The type of its command-line value: a sweepable option's may be a range LO:HI."""
        return str if self.sweepable else self.kind

    def help_text(self) -> str:
        default = self.shown if self.shown is not None else self.default
        text = f"{self.help} {SWEPT_HELP}" if self.sweepable else self.help
        return text if default is None else f"{text} [default: {default}]"

    def problem(self, value: Any) -> str | None:
        """Why `value` (of the right type) is outside this setting's domain, or None."""
        if self.choices and value not in self.choices:
            shown = ", ".join(map(str, self.choices))
            return f"unknown {self.name} {value!r}; choose one of {shown}"
        if self.kind is str:
            return None
        if self.kind is float and not math.isfinite(value):
            return f"must be a finite number, got {value}"
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        if self.positive and not 0 < value <= high:
            return f"must be a number > 0 and at most {self.high}, got {value}"
        if not low <= value <= high:
            if self.high is None:
                return f"must be at least {self.low:g}, got {value}"
            return f"must be between {self.low} and {self.high}, got {value}"
        return None


OPTIONS = (
    Option("model", str, "bn-mlp", "A built-in model (see `bncheck models`) or your own model file PATH.py.", "model"),
    Option("outputs", int, None, "bn-mlp: output columns k, the same for every draw. Without it, each draw's k "
           "comes from the sweep (a config's [sweep] k; 1 by default).", "model", low=1, high=MAX_SIZE),
    Option("activation", str, "relu", "relu | tanh | sigmoid | softplus | identity.", "option", choices=ACTIVATIONS),
    Option("ddof", int, 0, "Variance divisor N - ddof: 0 as in the BN paper, 1 as R's scale().", "option",
           choices=(0, 1)),
    Option("eps", float, 1e-5, "Added to the variance under the square root.", "option", low=0),
    Option("layout", str, "fc", "bn-layer: fc (x is N x D) | conv (x is N x C x H x W).", "option",
           choices=("fc", "conv")),
    # Each layer is a dimension and two parameters, all traced and compiled: past 100 a run is
    # nothing but compiling.
    Option("layers", int, 2, "mlp: number of affine layers L.", "option", low=1, high=100),
    Option("loss", str, "mse", "mlp: mse | xent (softmax cross-entropy).", "option", choices=("mse", "xent")),
    Option("stride", int, 1, "conv, max-pool: stride of the convolution or of the pooling windows.", "option",
           low=1, high=MAX_SIZE, sweepable=True),
    Option("padding", int, 0, "conv: zero padding on each side.", "option", low=0, high=MAX_SIZE, sweepable=True),
    Option("groups", int, 2, "group-norm: number of channel groups G (must divide C).", "option", low=1, high=MAX_SIZE,
           sweepable=True),
    Option("pool", int, 2, "max-pool: side of the square pooling window.", "option", low=1, high=MAX_SIZE,
           sweepable=True),
    Option("trials", int, 200, "Number of draws.", "draws", low=1, high=MAX_TRIALS),
    Option("seed", int, 0, "Seed of the first draw; draw t has seed + t.", "draws", low=0, high=2**63 - 1),
    Option("shape", str, None, "One fixed shape for every draw, e.g. N=10,p1=7,p2=4,k=1; else shapes are swept.",
           "draws"),
    Option("dtype", str, "float64", "float64 | float32 | bfloat16 | float16, with its own tolerances.", "run", choices=DTYPES),
    Option("device", str, "cpu", "cpu | gpu | auto, where JAX computes the references: gpu and auto use a GPU "
           "where the draws are large enough for it to pay, the CPU below that (gpu needs one, auto takes "
           "one if there); the report says which ran.", "run", choices=DEVICES),
    Option("processes", int, None, "Share the draws among this many processes, on one host or several, joined "
           "through jax.distributed; process 0 prints the report of them all, the others nothing. Give each the "
           "same --processes and --coordinator, and its own --process-id.", "run", low=1, high=2**16),
    Option("process_id", int, None, "With --processes: this process's number, 0 to N-1; 0 hosts the coordinator and "
           "prints the report.", "run", low=0, high=2**16 - 1),
    Option("coordinator", str, None, "With --processes: HOST:PORT where process 0 listens and the others reach it.",
           "run"),
    Option("reference", str, "autodiff",
           "autodiff, or fd to add float64 central differences on a few draws as a third opinion.", "run",
           choices=REFERENCES),
    Option("timeout", float, 60.0, "Seconds one call of a derivation function may take (a JVP's three directions: "
           "three times that, together); a slower call fails its check (0: no limit).", "run", low=0, high=10**9),
    Option("param_shapes", str, None, "Your code's shapes of inputs or parameters that differ from the model's by a "
           "reshape, in its dimension names, e.g. 'gamma=1,D beta=1,D': your functions get them so shaped, and a "
           "gradient returned so shaped is compared reshaped to the model's.", "run"),
    Option("max_jacobian_mb", float, 256.0, "Dense Jacobians larger than this are skipped; over a sixteenth of it, "
           "they are checked by products with jax.jvp / jax.vjp.", "run", positive=True, high=MAX_MB),
    Option("max_memory_mb", float, 4096.0, "What the run may hold in memory at once; draws are checked in chunks "
           "that fit, and a shape or file that cannot fit is refused before it is allocated.", "run",
           positive=True, high=MAX_MB),
    Option("rtol", float, TOLERANCES["float64"].rtol, "Pass if max|got-ref| <= atol + rtol*max|ref| + noise floor.",
           "tolerance", low=0, shown="by dtype"),
    Option("atol", float, TOLERANCES["float64"].atol, "Absolute tolerance.", "tolerance", low=0, shown="by dtype"),
    Option("require", str, None, "Functions that must be defined (one missing fails the run), comma-separated: "
           "grads (every gradient the model lists), all (every function it lists: its jac_ and jvp_ forms too; "
           "see `bncheck models`), an input or parameter (beta, G1: its gradient) or a function name (jac_B_G1).",
           "report"),
    Option("json", str, None, "Write the JSON report here ('-' for standard output, and no table).", "report"),
    Option("junit", str, None, "Write a JUnit XML report here ('-' for standard output, and no table).", "report"),
)
BY_NAME = {o.name: o for o in OPTIONS}
# The settings a model may read, with the defaults a model that does not read them keeps.
MODEL_OPTIONS = {o.name: o.default for o in OPTIONS if o.group == "option"}
# The model options a range may sweep (a config's [sweep], `--padding 0:2`).
SWEEPABLE = tuple(o.name for o in OPTIONS if o.sweepable)


def names(*groups: str, besides: tuple[str, ...] = (), but: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The settings of `groups` (and `besides`, without `but`), in the table's order."""
    return tuple(o.name for o in OPTIONS if (o.group in groups or o.name in besides) and o.name not in but)
