"""pytest plugin (entry point ``edgepack``): ``--edgepack-target NAME`` and the ``edgepack_target`` fixture.

Tests that use ``edgepack_target`` are parametrized over every ``--edgepack-target`` given and skipped with a
reason when none is.
"""

from __future__ import annotations

from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("edgepack", "edgepack hardware-in-the-loop")
    group.addoption(
        "--edgepack-target",
        action="append",
        default=[],
        metavar="NAME",
        help="run edgepack HIL tests against this target (repeatable)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hil: hardware-in-the-loop test (needs --edgepack-target)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "edgepack_target" in metafunc.fixturenames:
        targets = metafunc.config.getoption("--edgepack-target") or []
        if targets:
            metafunc.parametrize("edgepack_target", targets, indirect=True, ids=targets)
        else:
            metafunc.parametrize(
                "edgepack_target",
                [
                    pytest.param(
                        None,
                        marks=pytest.mark.skip(
                            reason="no --edgepack-target given; pass --edgepack-target NAME to run HIL tests"
                        ),
                    )
                ],
                indirect=True,
                ids=["no-target"],
            )


@pytest.fixture
def edgepack_target(request: pytest.FixtureRequest) -> Any:
    from edgepack.hil.handle import TargetHandle

    name = request.param
    if name is None:
        pytest.skip("no --edgepack-target given")
    handle = TargetHandle.open(str(name))
    try:
        yield handle
    finally:
        handle.close()
