"""JAX's persistent compilation cache, on by default for ``pyanode.fit`` and the ``pyanode`` command.

Compiling the forecaster's training step takes seconds, longer than a short fit itself. With the cache,
XLA's compiled programs are written to disk and a later process that builds the same program (same model
shape, same solver and options: the data are arguments, not constants, so other data of similar length
qualify) loads it instead of compiling.

Where: ``$PYANODE_CACHE_DIR`` when set (``off``, ``0``, ``false``, ``no`` or empty turn the cache off),
else ``$XDG_CACHE_HOME/pyanode`` when ``XDG_CACHE_HOME`` is set, else the user's cache folder from
platformdirs (``~/.cache/pyanode`` on Linux); XLA's programs go in its ``jax`` folder, the traced
programs (below) in its ``programs`` folder. A cache directory the user configured in JAX itself
(``jax_compilation_cache_dir``) is left alone. Entries are small (kilobytes to a few megabytes) and safe to
delete at any time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from pyanode._io import atomic_path

__all__ = ["cache_dir", "cache_root", "cached_program", "enable_compilation_cache"]

_OFF = {"", "0", "off", "false", "no", "none"}


def cache_root() -> Path | None:
    """pyanode's cache folder, or None when ``PYANODE_CACHE_DIR`` turns the caches off."""
    env = os.environ.get("PYANODE_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in _OFF else Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "pyanode"
    import platformdirs

    return Path(platformdirs.user_cache_dir("pyanode"))


def cache_dir() -> Path | None:
    """The folder the compilation cache would use (``jax`` in :func:`cache_root`), or None when off."""
    root = cache_root()
    return None if root is None else root / "jax"


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


# -- traced programs ----------------------------------------------------------------------------------------
#
# The compilation cache saves XLA's work, not JAX's: tracing the forecaster's training step (the adaptive
# solver's loop inside its gradient) takes longer than compiling it. So the traced program itself is kept
# too: exported (jax.export: StableHLO, versioned and portable across processes) on first use and read
# back by later processes that build the same program, which then skip tracing altogether.


def _program_dir() -> Path | None:
    root = cache_root()
    return None if root is None else root / "programs"


def _signature(leaves: list) -> list[str]:
    return [f"{jnp.result_type(x)}{list(jnp.shape(x))}" for x in leaves]


@functools.lru_cache(maxsize=1)
def _versions() -> str:
    """Versions of what shapes a traced program, and a hash of pyanode's own source."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for pkg in ("jax", "jaxlib", "diffrax", "equinox", "optax", "lineax", "optimistix"):
        try:
            parts.append(f"{pkg}={version(pkg)}")
        except PackageNotFoundError:
            parts.append(f"{pkg}=?")
    source = hashlib.sha256()
    for f in sorted(Path(__file__).parent.rglob("*.py")):
        source.update(f.read_bytes())
    return ";".join(parts) + ";pyanode=" + source.hexdigest()


def _out_structure(args: tuple, out_spec: dict) -> Any:
    if out_spec["kind"] == "array":
        return jax.tree_util.tree_structure(0)
    # (a pytree structured like the first argument, a dict of arrays): a training step's (state, metrics)
    return jax.tree_util.tree_structure((args[0], dict.fromkeys(out_spec["keys"], 0)))


def cached_program(fn: Callable, args: tuple, key: str) -> Callable:
    """``fn`` traced once per machine rather than once per process.

    ``fn`` is a jittable function of pytrees of arrays returning either one array or a pair (a pytree
    structured like its first argument, a dict of arrays) -- a training step's (state, metrics). Returns
    a function equivalent to ``jax.jit(fn)`` for arguments structured like ``args``. ``key`` must name
    everything static the program depends on besides the arguments' shapes and dtypes (added here, with
    the versions of the libraries that shape the program and a hash of pyanode's own source, so that
    another version never reads an old program). Falls back to ``jax.jit(fn)`` when the cache is off or
    exporting is not possible (an older JAX, a host callback in the program).
    """
    jitted = jax.jit(fn)
    folder = _program_dir()
    export = getattr(jax, "export", None)
    if folder is None or export is None:
        return jitted
    leaves, in_tree = jax.tree_util.tree_flatten(args)
    digest = hashlib.sha256("|".join([key, str(len(leaves)), *_signature(leaves), _versions()]).encode())
    name = digest.hexdigest()[:40]
    if name in _loaded:  # this process has it already (and its compiled form)
        call, out_spec = _loaded[name]
        return _caller(call, _out_structure(args, out_spec))
    path = folder / f"{name}.jaxexport"
    exported, out_spec = None, None
    if path.exists():
        try:
            blob = path.read_bytes()
            size = int.from_bytes(blob[:4], "little")
            out_spec = json.loads(blob[4 : 4 + size].decode())
            exported = export.deserialize(bytearray(blob[4 + size :]))
        except Exception:  # a damaged entry: trace again and replace it
            exported = None
    if exported is None:

        traced: dict[str, Any] = {}

        def flat(*xs: Any) -> list:
            traced["out"] = out = fn(*jax.tree_util.tree_unflatten(in_tree, list(xs)))
            return jax.tree_util.tree_leaves(out)

        try:
            specs = [jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)) for x in leaves]
            exported = export.export(jax.jit(flat))(*specs)
            out = traced["out"]  # (tracers: only the structure is read)
            out_spec = ({"kind": "array"} if not isinstance(out, tuple)
                        else {"kind": "state_and_dict", "keys": sorted(out[1])})
            header = json.dumps(out_spec).encode()
            blob = bytes(exported.serialize())
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_bytes(len(header).to_bytes(4, "little") + header + blob)
            # Run what later processes will read back (not the in-memory export, whose source locations
            # differ), so that they find its compiled form in the compilation cache too.
            exported = export.deserialize(bytearray(blob))
        except Exception:  # not exportable here: plain jit
            return jitted
    call = jax.jit(exported.call)
    _loaded[name] = (call, out_spec)
    return _caller(call, _out_structure(args, out_spec))


_loaded: dict[str, tuple[Callable, dict]] = {}


def _caller(call: Callable, structure: Any) -> Callable:
    # The output takes its structure (static parts included) from this call's arguments.
    def run(*a: Any) -> Any:
        return jax.tree_util.tree_unflatten(structure, call(*_committed(jax.tree_util.tree_leaves(a))))

    return run


def _committed(leaves: list) -> list:
    """The arguments, all committed to one device when they live on one device.

    ``jax.jit`` compiles a program once per mix of committed arguments (what a program returned) and
    uncommitted ones (fresh arrays): a training loop's first step (fresh state) and second (the first's
    output) would compile the same program twice, seconds each. Arguments spread over several devices (a
    sharded run) are left as they are.
    """
    devices = {d for x in leaves if _is_committed(x) for d in x.sharding.device_set}
    if len(devices) > 1:
        return leaves
    device = devices.pop() if devices else jax.local_devices()[0]
    fresh = [i for i, x in enumerate(leaves) if not _is_committed(x)]
    out = list(leaves)
    for i, x in zip(fresh, jax.device_put([leaves[i] for i in fresh], device), strict=True):  # one call
        out[i] = x
    return out


def _is_committed(x: Any) -> bool:
    if not isinstance(x, jax.Array):
        return False
    committed = getattr(x, "committed", None)  # (JAX 0.4.30, the oldest allowed, has only _committed)
    return bool(x._committed if committed is None else committed)
