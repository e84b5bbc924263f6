"""Step 6 of the forecaster: the model file, one zip of JSON and ``.npy`` arrays (never a pickle).

``meta.json`` holds the format tag and version, the :class:`~pyanode.forecast.model.Config` and whatever
else the forecaster keeps as plain values; ``model.eqx`` the model's parameters (equinox's leaf
serialisation, read back into a model rebuilt from the config); ``NAME.npy`` one array each, read with
``allow_pickle=False``. Writing is atomic (a temporary file in the same folder, then renamed); reading
never runs code from the file and turns every way a file can be wrong into one :class:`ModelFileError`.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import numpy as np

from pyanode._io import atomic_path
from pyanode.errors import PyanodeError
from pyanode.forecast.model import Config, ForecastModel

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "read_model_file", "write_model_file"]

FORMAT = "pyanode-forecaster"
FORMAT_VERSION = 3  # 2: per-column structure (trend, cycles, transform) replaced the scaler; 3: coupling


class ModelFileError(PyanodeError):
    """A saved forecaster file that cannot be read (missing, corrupt, or not a pyanode model)."""


def write_model_file(path: Path, meta: dict[str, Any], model: ForecastModel,
                     arrays: dict[str, np.ndarray], models: Sequence[ForecastModel] = ()) -> Path:
    """Write ``meta`` (plus the format tag and the model's config), the model and ``arrays`` to ``path``;
    ``models``: more models (a panel's per-series ones), as ``models/K.eqx`` with their configs in meta."""
    path = Path(path)
    if path.is_dir():
        raise PyanodeError(f"{path} is a directory; give a file name to save the forecaster to")
    if not path.parent.is_dir():
        raise PyanodeError(f"folder {path.parent} does not exist (for {path}); create it or give another "
                           "path")
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "config": model.config.to_json(), **meta}
    if models:
        meta["model_configs"] = [m.config.to_json() for m in models]
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("meta.json", json.dumps(meta, indent=1))
        z.writestr("model.eqx", _leaves(model))
        for k, m in enumerate(models):
            z.writestr(f"models/{k}.eqx", _leaves(m))
        for name, arr in arrays.items():
            b = io.BytesIO()
            np.save(b, np.ascontiguousarray(arr), allow_pickle=False)
            z.writestr(f"{name}.npy", b.getvalue())
    return path


def read_model_file(path: Path) -> tuple[dict[str, Any], ForecastModel, dict[str, np.ndarray]]:
    """``(meta, model, arrays)`` from a file written by :func:`write_model_file`."""
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory, not a saved forecaster")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "meta.json" not in names:
                raise ModelFileError(f"{path} is not a pyanode forecaster (no meta.json inside)")
            meta = json.loads(z.read("meta.json").decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ModelFileError(f"{path} is not a pyanode forecaster file")
            if meta.get("version") != FORMAT_VERSION:
                raise ModelFileError(f"{path} has format version {meta.get('version')}; this pyanode reads "
                                     f"version {FORMAT_VERSION}; fit the model again with this pyanode")
            arrays = {n[:-4]: np.load(io.BytesIO(z.read(n)), allow_pickle=False)
                      for n in names if n.endswith(".npy")}
            model = _model(z.read("model.eqx"), meta["config"])
            # More models (a panel's per-series ones) travel in meta as "_models", for the caller.
            meta["_models"] = [_model(z.read(f"models/{k}.eqx"), c)
                               for k, c in enumerate(meta.get("model_configs", []))]
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError, EOFError, RuntimeError) as err:
        raise ModelFileError(f"{path} is not a readable pyanode forecaster file "
                             f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
                             ) from None
    return meta, model, arrays


def _leaves(model: ForecastModel) -> bytes:
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, model)
    return buf.getvalue()


def _model(blob: bytes, config: dict) -> ForecastModel:
    """A model rebuilt from its config, its parameters read into it. (A file written before the periods
    were an array of the model holds every other parameter: the config's periods are taken.)"""
    model = ForecastModel(Config.from_json(config), 0)
    try:
        return eqx.tree_deserialise_leaves(io.BytesIO(blob), model)
    except (EOFError, ValueError, RuntimeError):
        older = eqx.tree_deserialise_leaves(io.BytesIO(blob), eqx.tree_at(lambda m: m.periods, model, None))
        return eqx.tree_at(lambda m: m.periods, older, model.periods, is_leaf=lambda x: x is None)
