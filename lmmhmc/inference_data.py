"""The ArviZ InferenceData of a fit, named and shaped by the parameter layout."""

from __future__ import annotations

import arviz as az
import numpy as np

from .assembled import AssembledModel

__all__ = ["OBS_DIM", "to_inference_data"]

#: Dimension of the observations in log_likelihood, posterior_predictive and observed_data.
OBS_DIM = "__obs__"


def to_inference_data(assembled: AssembledModel, samples: dict, effects: list, loglik, yrep,
                      stats: dict) -> az.InferenceData:
    """Posterior (sampled parameters, correlations as pairs, every random effect), sample
    statistics, pointwise log-likelihood and replicated responses (when given) and the
    observed response. Arrays are ``(chains, draws, ...)``; ``effects``, ``loglik`` and
    ``yrep`` have the chains stacked on their leading axis."""
    layout, design = assembled.layout, assembled.design
    chains, draws = np.asarray(samples[next(iter(layout.site_shapes()))]).shape[:2]

    def grouped(a):
        a = np.asarray(a)
        return a.reshape((chains, draws) + a.shape[1:])

    posterior = {name: np.asarray(samples[name]) for name in layout.fixed}
    if layout.sigma is not None:
        posterior[layout.sigma] = np.asarray(samples[layout.sigma])
    posterior.update({name: np.asarray(samples[name]) for name in layout.sigma_fixed})
    dims, coords = {}, {}
    terms = [*layout.terms, *layout.sigma_terms]
    design_terms = [*design.terms, *(design.sigma_part.terms if design.sigma_part else [])]
    for t, u, term in zip(terms, effects, design_terms, strict=True):
        posterior.update({name: np.asarray(samples[name]) for name in t.sds})
        if t.correlated:
            chol = np.asarray(samples[t.corr])
            rows, cols = t.pairs()
            posterior[t.corr] = (chol @ np.swapaxes(chol, -1, -2))[..., rows, cols]
            dims[t.corr] = [t.corr_dim]
            coords[t.corr_dim] = t.pair_labels()
        coords[t.level_dim] = [str(v) for v in term.levels]
        u = grouped(u)
        for j, c in enumerate(t.columns):
            posterior[c] = u[..., j]
            dims[c] = [t.level_dim]
    coords[OBS_DIM] = np.arange(design.n_obs)
    dims[design.response] = [OBS_DIM]
    groups = {"posterior": posterior, "sample_stats": _sample_stats(stats),
              "observed_data": {design.response: design.y}}
    if loglik is not None:
        groups["log_likelihood"] = {design.response: grouped(loglik)}
    if yrep is not None:
        groups["posterior_predictive"] = {design.response: grouped(yrep)}
    return az.from_dict(**groups, coords=coords, dims=dims)


def _sample_stats(stats: dict) -> dict:
    """ArviZ's sample_stats names for NumPyro's NUTS statistics."""
    n_steps = np.asarray(stats["num_steps"])
    return {
        "diverging": np.asarray(stats["diverging"]),
        "n_steps": n_steps,
        "tree_depth": np.floor(np.log2(np.maximum(n_steps, 1))).astype(int) + 1,
        "step_size": np.asarray(stats["step_size"]),
        "energy": np.asarray(stats["energy"]),
        "lp": -np.asarray(stats["potential_energy"]),
        "acceptance_rate": np.asarray(stats["accept_prob"]),
    }
