"""JAX's persistent compilation cache, on by default for ``pyanode.fit`` and the ``pyanode`` command.

Compiling the forecaster's training step takes seconds, longer than a short fit itself. With the cache,
XLA's compiled programs are written to disk and a later process that builds the same program (same model
shape, same solver and options: the data are arguments, not constants, so other data of similar length
qualify) loads it instead of compiling.

Where: ``$PYANODE_CACHE_DIR`` when set (``off``, ``0``, ``false``, ``no`` or empty turn the cache off),
else ``$XDG_CACHE_HOME/pyanode/jax`` when ``XDG_CACHE_HOME`` is set, else the user's cache folder from
platformdirs (``~/.cache/pyanode/jax`` on Linux). A cache directory the user configured in JAX itself
(``jax_compilation_cache_dir``) is left alone. Entries are small (kilobytes to a few megabytes) and safe to
delete at any time.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["cache_dir", "enable_compilation_cache"]

_OFF = {"", "0", "off", "false", "no", "none"}


def cache_dir() -> Path | None:
    """The folder the compilation cache would use, or None when ``PYANODE_CACHE_DIR`` turns it off."""
    env = os.environ.get("PYANODE_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in _OFF else Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "pyanode" / "jax"
    import platformdirs

    return Path(platformdirs.user_cache_dir("pyanode")) / "jax"


def enable_compilation_cache() -> Path | None:
    """Point JAX's persistent compilation cache at :func:`cache_dir` (idempotent); return the folder used.

    Every compiled program is cached, however quick its compilation (JAX's default skips those under a
    second, which are most of a forecaster's). A folder that cannot be created leaves the cache off
    rather than failing the fit.
    """
    current = jax.config.jax_compilation_cache_dir
    path = cache_dir()
    if path is None:
        return None
    if current:
        return Path(current)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
