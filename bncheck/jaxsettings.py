"""The JAX settings bncheck needs, set for as long as it needs them: float64 (float64, a context
restored on exit, so that a caller's own JAX code keeps its settings) and the persistent compilation
cache.

The persistent compilation cache keeps bncheck's references, so a repeated run (CI, a second look at
a failure) loads its XLA programs from disk instead of compiling them again.

`BNCHECK_COMPILE_CACHE` picks the folder; `off` (or `0`, `no`, `false`) turns the cache off. The
default is `$XDG_CACHE_HOME/bncheck/jax`, else `~/.cache/bncheck/jax`. JAX keys each entry by the
program, the compile options, the jax and jaxlib versions and the device, so a stale entry is never
used; a folder that cannot be created leaves the cache off. A cache the caller's own process already
configured is left as it is.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path

ENV = "BNCHECK_COMPILE_CACHE"
OFF = ("off", "0", "no", "false")
# Programs that compile faster than this are not worth a disk write and a read.
MIN_COMPILE_SECONDS = 0.1


def cache_dir() -> Path | None:
    """The folder the cache would use, or None when it is switched off."""
    setting = os.environ.get(ENV, "").strip()
    if setting.lower() in OFF:
        return None
    if setting:
        return Path(setting).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bncheck" / "jax"


def enable() -> Path | None:
    """Points JAX's persistent cache at cache_dir(); returns the folder in use, or None."""
    import jax

    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    folder = cache_dir()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return folder


def float64() -> AbstractContextManager:
    """jax_enable_x64 on, for the length of a `with` block."""
    import jax

    try:
        return jax.enable_x64(True)
    except (AttributeError, TypeError):  # jax before the config states were context managers
        from jax.experimental import enable_x64

        return enable_x64()
