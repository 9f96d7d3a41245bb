"""Save a fit to netCDF and load it back.

The file is an ordinary ArviZ netCDF file (``arviz.from_netcdf`` reads its groups) with one
extra variable in the root group, ``lmmhmc_metadata``: a pickle (as bytes) of what rebuilds the
rest of the :class:`~lmmhmc.results.FitResult`::

    formula, data (the training DataFrame as given), weights, na_action,
    plan, priors, settings, timings, gradients, ml, versions

Its attributes repeat the formula and the package versions in plain text. On load the model is
rebuilt with ``Model(formula, data, weights=weights, na_action=na_action)``, so the design
(transforms, categorical encodings, level order) is exactly the one of the fit, and a loaded
result summarises and predicts as the original did.

The metadata is a pickle: load only files you trust, as with any pickle.
"""

from __future__ import annotations

import json
import pickle
import platform
import warnings
from importlib import metadata as importlib_metadata
from os import PathLike
from pathlib import Path

import arviz as az
import numpy as np
import xarray as xr

from .errors import LmmhmcError
from .model import Model
from .results import FitResult

__all__ = ["load", "save"]

#: Name of the root-group variable holding the metadata.
METADATA = "lmmhmc_metadata"
#: Version of the metadata layout; bumped on incompatible changes.
FORMAT = 1
_PACKAGES = ("lmmhmc", "arviz", "jax", "numpyro", "numpy", "pandas", "formulaic", "xarray")


def save(result: FitResult, path: str | PathLike) -> None:
    """Write a fit to a netCDF file (overwriting it).

    Parameters
    ----------
    result : FitResult
        The fit.
    path : str or path-like
        Destination, conventionally ``*.nc``.
    """
    model = result.model
    weights = model.weights
    if weights is not None and not isinstance(weights, str):
        weights = np.asarray(weights, dtype=np.float64)
    versions = _versions()
    payload = pickle.dumps({
        "format": FORMAT,
        "formula": model.formula,
        "data": model.data,
        "weights": weights,
        "na_action": model.na_action,
        "plan": result.plan,
        "priors": result.priors,
        "settings": result.settings,
        "timings": result.timings,
        "gradients": result.gradients,
        "ml": result.ml,
        "versions": versions,
    })
    path = str(path)
    result.idata.to_netcdf(path)
    meta = xr.Dataset({METADATA: (f"{METADATA}_bytes", np.frombuffer(payload, np.uint8))})
    meta[METADATA].attrs.update(format=FORMAT, formula=model.formula,
                                versions=json.dumps(versions))
    meta.to_netcdf(path, mode="a", engine="h5netcdf", encoding={METADATA: {"zlib": True}})


def load(path: str | PathLike) -> FitResult:
    """Read a fit written by :meth:`FitResult.save`.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.

    Returns
    -------
    FitResult
        With the same posterior, model, plan, priors, settings, timings and ML start.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    LmmhmcError
        If the file is not a netCDF file written by lmmhmc, or the rebuilt design does not
        match the stored posterior (e.g. after an incompatible change of pandas).
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
    meta = pickle.loads(raw)
    with warnings.catch_warnings():  # the fit already reported dropped rows
        warnings.simplefilter("ignore")
        model = Model(meta["formula"], meta["data"], weights=meta["weights"],
                      na_action=meta["na_action"])
    _check_design(model.design, idata, path)
    return FitResult(idata=idata, model=model, plan=meta["plan"], priors=meta["priors"],
                     settings=meta["settings"], timings=meta["timings"],
                     gradients=meta.get("gradients", {}), ml=meta["ml"])


def _versions() -> dict[str, str]:
    """Versions of Python and of the packages a fit depends on."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def _check_design(design, idata: az.InferenceData, path: Path) -> None:
    """Raise if the rebuilt design does not match the posterior read from `path`."""
    observed = idata.observed_data[design.response].values
    same = np.array_equal(observed, design.y) and all(
        list(idata.posterior[t.columns[0]].coords[f"{t.factor}__factor_dim"].values)
        == list(t.levels)
        for t in design.terms
    )
    if not same:
        raise LmmhmcError(
            f"the model rebuilt from '{path}' does not match its posterior (observations or "
            "group levels differ); it may have been written with other package versions"
        )
