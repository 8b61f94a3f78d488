"""The ``>>>`` examples in the docstrings of the pure packages run, and hold.

Every module of ``parsers`` and ``workflow`` (found by walking the packages, so a new
module is covered without being listed here) and ``storage.outbox``. A failing example
is printed by doctest in the test's captured output.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import parsers
import workflow


def _modules() -> list[str]:
    names = []
    for package in (parsers, workflow):
        names.append(package.__name__)
        prefix = package.__name__ + "."
        names.extend(module.name for module in pkgutil.walk_packages(package.__path__, prefix))
    return [*sorted(names), "storage.outbox"]


MODULES = _modules()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    results = doctest.testmod(importlib.import_module(name), report=False)
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples failed"
