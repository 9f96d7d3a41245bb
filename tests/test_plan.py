"""The planner: which terms are marginalized, and how their kernel is factored."""

from __future__ import annotations

import pytest
from conftest import simulate_crossed

import lmmhmc
from lmmhmc.datasets import load
from lmmhmc.errors import LmmhmcError
from lmmhmc.marginal import Elimination, prepare
from lmmhmc.plan import elimination, gradient_cost, make_plan, ynn_reductions


def test_plan_choices_and_errors():
    model = lmmhmc.Model("np.log(TICKS + 1) ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
                         load("grouseticks"))
    auto = make_plan(model.design)
    assert auto.marginalized == (0, 1)  # two small terms: the joint kernel is cheap
    assert make_plan(model.design, "none").marginalized == ()
    assert make_plan(model.design, ["LOCATION"]).marginalized == (1,)
    assert make_plan(model.design, ["1 | BROOD"]).marginalized == (0,)
    with pytest.raises(LmmhmcError, match="no grouping term 'nest'"):
        make_plan(model.design, ["nest"])
    assert "marginalized: (1 | BROOD), (1 | LOCATION)" in str(auto)


def test_the_plan_chooses_the_elimination_and_the_kernel_follows_it():
    """Nested terms: all block-diagonal, finest first; crossed terms: the term with the most
    effects first, then the Schur complement; the prepared kernel uses the given order."""
    nested = lmmhmc.Model("np.log(TICKS + 1) ~ YEAR + (1 | LOCATION) + (1 | BROOD)",
                          load("grouseticks")).design
    order = elimination(nested.terms)
    assert order.n_diag == 2 and order.order == (1, 0)  # BROOD (118 levels) within LOCATION
    crossed = lmmhmc.Model("y ~ cond + (1 | subj) + (1 | item)", simulate_crossed()).design
    order = elimination(crossed.terms)
    assert order.n_diag == 1 and order.order == (0, 1)  # 20 subjects before 15 items
    plan = make_plan(crossed, "all")
    assert plan.elimination == order
    assert gradient_cost(crossed, (0, 1)) == (plan.flops, order)
    kernel = prepare(crossed.terms, None, Elimination.first(1, 2, "pairs"))
    assert kernel.static.order == (1, 0) and kernel.static.cross == "pairs"
    with pytest.raises(ValueError, match="elimination order"):
        prepare(crossed.terms)


def test_a_non_gaussian_family_is_costed_by_its_newton_steps():
    """Each of the K Newton steps of the reparameterization recomputes the predictor, the
    weighted Gram blocks per row and the kernel's factorization."""
    from lmmhmc.families import FAMILIES
    from lmmhmc.plan import GRADIENT_FACTOR, kernel_cost

    design = lmmhmc.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                          load("cbpp"), family="binomial").design
    n, p = design.X.shape
    step = n * (p + 1 + GRADIENT_FACTOR) + kernel_cost(design.terms)[1]
    plan = make_plan(design, family="binomial")
    assert plan.flops == FAMILIES["binomial"].newton_steps * step
    # each family's own K: two steps for poisson, one for the logistic families
    assert make_plan(design, family="poisson").flops == 2 * step == 2 * plan.flops
    assert make_plan(design).flops < plan.flops  # the Gaussian kernel: precomputed columns


def test_ynn_reductions_only_for_single_column_terms_marginalized_beside_sampled_ones():
    """The measured rule of `ynn_reductions` (the timings are in its docstring and
    docs/troubleshooting.md): InstEval with some terms marginalized and others sampled, but
    not with all sampled or all marginalized, nor 2 x 2 blocks, nor a small N."""
    design = lmmhmc.Model("y ~ service + (1 | s) + (1 | d) + (1 | dept)", load("InstEval")).design
    assert ynn_reductions(design, (0,)) and ynn_reductions(design, (0, 2))
    assert not ynn_reductions(design, ()) and not ynn_reductions(design, (0, 1, 2))
    assert not ynn_reductions(design, (0,), family="bernoulli")
    sleep = lmmhmc.Model("Reaction ~ Days + (1 | Subject)", load("sleepstudy")).design
    assert not ynn_reductions(sleep, (0,))
    data = simulate_crossed(n_subjects=200, n_items=60)
    crossed = lmmhmc.Model("y ~ x + (1 + x | subj) + (1 | item)", data).design
    assert crossed.n_obs >= 10_000 and not ynn_reductions(crossed, (1,))
