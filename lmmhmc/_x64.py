"""JAX in double precision: the one place where lmmhmc switches ``jax_enable_x64`` on.

The marginal-likelihood kernels need float64 (their Cholesky factors and log-determinants lose
too much in float32). Every lmmhmc module that imports ``jax`` or ``numpyro`` imports this
module too (``tests/test_architecture.py`` checks it), so the switch happens before lmmhmc
creates any JAX array, whichever of its modules is imported first. ``import lmmhmc`` alone does
not import JAX (the command line's ``--help``, ``datasets`` and ``describe`` do not need it);
it imports this module only when JAX is already loaded, so that a session which imported JAX
first gets float64 at once, as before.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)
