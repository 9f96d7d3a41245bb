"""Save a fit to netCDF and load it back ([`lmmhmc.storage`][lmmhmc.storage] holds the file format).

The metadata rebuilds the rest of the [`FitResult`][lmmhmc.results.FitResult]::

    formula, data (the training DataFrame as given), weights, offset, na_action, family,
    plan, priors, options, timings, gradients, ml, versions

On load the model is rebuilt with ``Model(formula, data, weights=..., offset=..., na_action=...,
family=...)`` (files without a family are Gaussian)
and assembled with the same plan and priors, so the design (transforms, categorical encodings,
level order) is exactly the one of the fit, and a loaded result summarises and predicts as the
original did.

The metadata is a pickle: load only files you trust, as with any pickle.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from os import PathLike
from pathlib import Path

import arviz as az
import numpy as np

from .assembled import assemble
from .centering import centered, choose
from .errors import LmmhmcError
from .layout import parameter_layout
from .model import Model
from .options import FitOptions
from .plan import make_plan
from .results import FitResult
from .storage import METADATA, read

__all__ = ["METADATA", "load", "save"]


def save(result: FitResult, path: str | PathLike) -> None:
    """Write a fit to a netCDF file (overwriting it); see
    [`FitResult.save()`][lmmhmc.results.FitResult.save].

    Parameters
    ----------
    result : FitResult
        The fit.
    path : str or path-like
        Destination, conventionally ``*.nc``.
    """
    result.save(path)


def load(path: str | PathLike) -> FitResult:
    """Read a fit written by [`save()`][lmmhmc.io.save].

    Parameters
    ----------
    path : str or path-like
        A file written by [`save()`][lmmhmc.io.save].

    Returns
    -------
    FitResult
        With the same posterior, model, plan, priors, options, timings and ML start.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    LmmhmcError
        If the file is not a netCDF file written by lmmhmc, or the rebuilt design does not
        match the stored posterior (e.g. after an incompatible change of pandas).
    """
    idata, meta = read(path)
    # the fit already reported dropped rows and passed the checks (lmmhmc.checks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Model(meta["formula"], meta["data"], weights=meta["weights"],
                      offset=meta.get("offset"), na_action=meta["na_action"],
                      allow_one_per_level=True, family=meta.get("family", "gaussian"))
    _check_design(model.design, idata, Path(path))
    plan, options = meta["plan"], meta.get("options")
    if meta["format"] == 1:  # lmmhmc 0.1.0: plan the same terms again; settings, not options
        texts = [model.design.terms[k].text for k in plan.marginalized]
        plan = replace(make_plan(model.design, texts or "none"), reason=plan.reason)
        options = meta["settings"]
    options = FitOptions(**{"centering": "none", **options})  # older fits: non-centered
    assembled = assemble(model.design, plan, meta["priors"], family=model.family)
    assembled = centered(assembled, choose(assembled, meta["ml"], options.centering))
    return FitResult(idata=idata, model=model, assembled=assembled,
                     options=options, timings=meta["timings"],
                     gradients=meta.get("gradients", {}), ml=meta["ml"])


def _check_design(design, idata: az.InferenceData, path: Path) -> None:
    """Raise if the rebuilt design does not match the posterior read from `path`."""
    observed = idata.observed_data[design.response].values
    same = np.array_equal(observed, design.y) and all(
        list(idata.posterior[names.columns[0]].coords[names.level_dim].values) == list(t.levels)
        for t, names in zip(design.terms, parameter_layout(design).terms, strict=True)
    )
    if not same:
        raise LmmhmcError(
            f"the model rebuilt from '{path}' does not match its posterior (observations or "
            "group levels differ); it may have been written with other package versions"
        )
