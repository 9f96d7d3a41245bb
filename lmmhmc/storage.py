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
import os
import pickle
import platform
import tempfile
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

    ``format`` and ``versions`` are added to the metadata. The file is written to a temporary
    file in the same folder and then renamed over ``path`` (``os.replace``), so that a failed
    write (a full disk, an interrupt) never leaves a partial file in place of an earlier one.
    """
    versions = _versions()
    payload = pickle.dumps({"format": FORMAT, **meta, "versions": versions})
    stored = xr.Dataset({METADATA: (f"{METADATA}_bytes", np.frombuffer(payload, np.uint8))})
    stored[METADATA].attrs.update(format=FORMAT, formula=str(meta.get("formula")),
                                  versions=json.dumps(versions))
    target = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                         dir=target.resolve().parent)
    os.close(handle)
    try:
        idata.to_netcdf(temporary)
        stored.to_netcdf(temporary, mode="a", engine="h5netcdf",
                         encoding={METADATA: {"zlib": True}})
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read(path: str | PathLike) -> tuple[az.InferenceData, dict]:
    """The InferenceData and the metadata of a file written by [`write()`][lmmhmc.storage.write].

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    LmmhmcError
        If the file is not a netCDF file written by lmmhmc (a text file, a truncated or
        damaged file, another program's netCDF file), or was written by a newer lmmhmc.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file '{path}' not found")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as root:
            stored = root.get(METADATA)
            raw = None if stored is None else stored.values.tobytes()
            attrs = {} if stored is None else dict(stored.attrs)
        if raw is not None:
            with az.rc_context({"data.load": "eager"}):
                idata = az.from_netcdf(path)
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    if raw is None:
        raise LmmhmcError(
            f"'{path}' was not written by lmmhmc (it has no {METADATA}); "
            "read it with arviz.from_netcdf"
        )
    if attrs.get("format", FORMAT) > FORMAT:
        writer = json.loads(attrs["versions"])["lmmhmc"]
        raise LmmhmcError(f"'{path}' was written by a newer lmmhmc ({writer}); "
                          "upgrade lmmhmc to read it")
    try:
        meta = pickle.loads(raw)
    except (pickle.UnpicklingError, EOFError, *_READ_ERRORS) as exc:
        raise _unreadable(path, exc) from exc
    if not isinstance(meta, dict) or "format" not in meta:
        raise _unreadable(path, TypeError(f"its {METADATA} is not lmmhmc metadata"))
    return idata, meta


# What reading a damaged or foreign file raises (h5py and h5netcdf raise several kinds).
_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError)


def _unreadable(path: Path, exc: BaseException) -> LmmhmcError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return LmmhmcError(f"cannot read '{path}' as an lmmhmc result (the file is damaged, "
                       f"truncated or not written by lmmhmc.save: {first})")


def _versions() -> dict[str, str]:
    """Versions of Python and of the packages a fit depends on."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions
