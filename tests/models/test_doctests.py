"""The Examples in models/ docstrings are tests: run them."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["models.features", "models.novelty", "models.rates", "models.phases",
           "models.risk", "models.profile", "models.frozen", "models.inventory",
           "models.exports.netpol", "collectors.packages"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
