"""lmmhmc: Bayesian linear mixed models with random effects marginalized inside NumPyro HMC.

Importing the package switches JAX to double precision (``jax_enable_x64``): the marginal
likelihood kernels need it.
"""

import jax

jax.config.update("jax_enable_x64", True)

from lmmhmc import datasets  # noqa: E402  (after enabling float64)
from lmmhmc.io import load  # noqa: E402
from lmmhmc.model import Model  # noqa: E402
from lmmhmc.results import compare  # noqa: E402


def fit(formula: str, data, *, weights=None, na_action: str = "drop", **kwargs):
    """Fit a linear mixed model by NUTS with the random effects marginalized.

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"rt ~ cond + (1 + cond | subject) + (1 | item)"``.
    data : pandas.DataFrame
        The observations.
    weights, na_action
        As for :class:`Model`.
    **kwargs
        Sampler options: ``priors`` (dict name -> numpyro distribution), ``marginalize``
        (``"auto"``, ``"all"``, ``"none"`` or a list of terms), ``chains=4``, ``draws=1000``,
        ``warmup=1000``, ``seed=0``, ``target_accept=0.8``, ``progress=True``, ``init="ml"``
        or ``"prior"``, ``dense_mass=None`` (auto), ``max_tree_depth=10``,
        ``log_likelihood=None`` (auto), ``posterior_predictive=False``,
        ``chain_method="auto"`` (``"parallel"`` over JAX devices when there are at least
        ``chains`` of them, else ``"sequential"``).

    Returns
    -------
    FitResult
    """
    return Model(formula, data, weights=weights, na_action=na_action).fit(**kwargs)

__version__ = "0.1.0"

__all__ = ["Model", "__version__", "compare", "datasets", "fit", "load"]
