"""The netCDF file of a fit: ArviZ's groups plus one metadata variable.

The file is an ordinary ArviZ netCDF file (``arviz.from_netcdf`` reads its groups) with one
extra variable in the root group, ``lmmhmc_metadata``: a pickle (as bytes) of a dict that
rebuilds the rest of the fit ([`lmmhmc.results.FitResult.save()`][lmmhmc.results.FitResult.save]
writes it, [`lmmhmc.io.load()`][lmmhmc.io.load] reads it). Its attributes repeat the formula and the
package versions in plain text.

The metadata is a pickle: load only files you trust, as with any pickle.
"""

from __future__ import annotations

import json
import pickle
import platform
from importlib import metadata as importlib_metadata
from os import PathLike
from pathlib import Path

import arviz as az
import numpy as np
import xarray as xr

from .errors import LmmhmcError

__all__ = ["FORMAT", "METADATA", "read", "write"]

#: Name of the root-group variable holding the metadata.
METADATA = "lmmhmc_metadata"
#: Version of the metadata layout; bumped on incompatible changes.
FORMAT = 2
_PACKAGES = ("lmmhmc", "arviz", "jax", "numpyro", "numpy", "pandas", "formulaic", "xarray")


def write(idata: az.InferenceData, meta: dict, path: str | PathLike) -> None:
    """Write ``idata`` and the metadata ``meta`` (a picklable dict) to ``path``.

    ``format`` and ``versions`` are added to the metadata.
    """
    versions = _versions()
    payload = pickle.dumps({"format": FORMAT, **meta, "versions": versions})
    path = str(path)
    idata.to_netcdf(path)
    stored = xr.Dataset({METADATA: (f"{METADATA}_bytes", np.frombuffer(payload, np.uint8))})
    stored[METADATA].attrs.update(format=FORMAT, formula=str(meta.get("formula")),
                                  versions=json.dumps(versions))
    stored.to_netcdf(path, mode="a", engine="h5netcdf", encoding={METADATA: {"zlib": True}})


def read(path: str | PathLike) -> tuple[az.InferenceData, dict]:
    """The InferenceData and the metadata of a file written by [`write()`][lmmhmc.storage.write].

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    LmmhmcError
        If the file is not a netCDF file written by lmmhmc, or by a newer lmmhmc.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file '{path}' not found")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as root:
            stored = root.get(METADATA)
            raw = None if stored is None else stored.values.tobytes()
            attrs = {} if stored is None else dict(stored.attrs)
        with az.rc_context({"data.load": "eager"}):
            idata = az.from_netcdf(path)
    except (OSError, ValueError) as exc:
        raise LmmhmcError(f"cannot read '{path}' as an lmmhmc result: {exc}") from exc
    if raw is None:
        raise LmmhmcError(
            f"'{path}' was not written by lmmhmc (it has no {METADATA}); "
            "read it with arviz.from_netcdf"
        )
    if attrs["format"] > FORMAT:
        writer = json.loads(attrs["versions"])["lmmhmc"]
        raise LmmhmcError(f"'{path}' was written by a newer lmmhmc ({writer}); "
                          "upgrade lmmhmc to read it")
    return idata, pickle.loads(raw)


def _versions() -> dict[str, str]:
    """Versions of Python and of the packages a fit depends on."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions
