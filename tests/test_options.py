"""FitOptions is the one source of the sampler's defaults."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import lmmhmc
from lmmhmc.errors import LmmhmcError
from lmmhmc.options import CENTERINGS, CHAIN_METHODS, DEFAULTS, FitOptions


@pytest.mark.parametrize("function", [lmmhmc.fit, lmmhmc.Model.fit], ids=["fit", "Model.fit"])
def test_fit_takes_every_option_with_its_default(function) -> None:
    params = inspect.signature(function).parameters
    for field in dataclasses.fields(FitOptions):
        assert params[field.name].default == getattr(DEFAULTS, field.name), field.name


def test_chain_method_and_centering_are_checked() -> None:
    assert DEFAULTS.chain_method == "auto" and DEFAULTS.centering == "auto"
    assert set(CHAIN_METHODS) == {"auto", "parallel", "sequential", "vectorized"}
    with pytest.raises(LmmhmcError, match="chain_method must be one of 'auto', 'parallel', "
                                          "'sequential', 'vectorized', got 'threads'"):
        FitOptions(chain_method="threads")
    with pytest.raises(LmmhmcError, match=f"centering must be one of "
                                          f"{', '.join(map(repr, CENTERINGS))}, got 'some'"):
        FitOptions(centering="some")
