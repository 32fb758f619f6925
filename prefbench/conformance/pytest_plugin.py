"""pytest plugin for a library's own test suite: ``pytest_plugins = ["prefbench.conformance.pytest_plugin"]`` in its
conftest.py gives tests the ``loss_conformance`` fixture, which is :func:`prefbench.conformance.assert_conforms`."""

import pytest

from prefbench.conformance.check import assert_conforms


@pytest.fixture
def loss_conformance():
    """``loss_conformance(objective, impl, adapter=None, known_differences=None, **params)``: run prefbench's golden
    cases of ``objective`` on ``impl`` and fail the test, with the table of every check, unless all pass."""
    return assert_conforms
