"""The planner: which terms are marginalized, and how their kernel is factored."""

from __future__ import annotations

import pytest
from conftest import simulate_crossed

import lmmhmc
from lmmhmc.datasets import load
from lmmhmc.errors import LmmhmcError
from lmmhmc.marginal import Elimination, prepare
from lmmhmc.plan import elimination, gradient_cost, kernel_cost, make_plan


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


def test_sampled_terms_cost_their_level_pairs_not_their_rows():
    """With sampled terms the projections are precomputed cross products (`marginal.Affine`):
    their cost counts the distinct level pairs (`Design.level_pair_counts`, here against a
    brute-force count), so InstEval's default plan costs less than one pass over its rows."""
    design = lmmhmc.Model("y ~ service + (1 | s) + (1 | d) + (1 | dept)", load("InstEval")).design
    pairs = design.level_pair_counts
    for j, a in enumerate(design.terms):
        for k, b in enumerate(design.terms):
            assert pairs[j, k] == len(set(zip(a.index.tolist(), b.index.tolist(), strict=True)))
    kernel = gradient_cost(design, (0,))[1]
    flops = gradient_cost(design, (0,))[0]
    p, q = design.X.shape[1], design.terms[0].n_levels
    sampled = (p + 1) * (q + design.terms[1].n_levels + design.terms[2].n_levels)
    cross = pairs[0, 1] + pairs[0, 2] + pairs[1, 1] + pairs[1, 2] + pairs[2, 2]
    assert kernel is not None and flops == sampled + cross + kernel_cost([design.terms[0]])[1]
    assert flops < design.n_obs * p
