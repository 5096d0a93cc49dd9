"""Shared fixtures: every test gets its own event loop, so memory hives never leak, and its
own catalog, so declarations of one test module never meet another's."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest

from microhive import private_catalog

pytest_plugins = ["tests.browser"]


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, Any]:
    """A test module is imported (collected) inside a catalog of its own: modules that
    declare one name with different shapes are separate programs here."""
    if not isinstance(collector, pytest.Module):
        return (yield)
    with private_catalog(f"module {collector.nodeid}"):
        return (yield)


@pytest.fixture(autouse=True)
def _private_catalog(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test declares into (and its bare buses and brokers look up) a catalog of its own."""
    with private_catalog(f"test {request.node.nodeid}"):
        yield
