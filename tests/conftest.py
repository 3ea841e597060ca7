"""Shared fixtures: the third-party test-data directory and a run summary of suite counts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

_COUNTS: dict[str, int] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--testdata",
        action="store",
        default=None,
        metavar="DIR",
        help="directory holding the third-party suites (html5lib-tests, http-state, tcf); "
        "CI passes ../shared/testdata. Without it those suites are skipped, and the run says so.",
    )
    parser.addoption(
        "--screenshots",
        action="store",
        default=None,
        metavar="DIR",
        help="save the banner's screenshots (tests/e2e/test_banner.py) into DIR, e.g. docs/images; "
        "without it they go to a temporary directory",
    )


def pytest_configure(config: pytest.Config) -> None:
    value = config.getoption("--testdata")
    if value and not Path(value).is_dir():
        raise pytest.UsageError(f"--testdata {value}: no such directory")


@pytest.fixture(scope="session")
def testdata(request: pytest.FixtureRequest) -> Path:
    """The third-party suites directory; skips the test when it was not given."""
    value = request.config.getoption("--testdata")
    if not value:
        pytest.skip("third-party suites not given: run pytest with --testdata ../shared/testdata")
    return Path(value)


@pytest.fixture(scope="session")
def record_count() -> Callable[[str, int], None]:
    """Record how many cases of a third-party suite ran; printed at the end of the run."""

    def record(name: str, n: int) -> None:
        _COUNTS[name] = _COUNTS.get(name, 0) + n

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not terminalreporter.config.getoption("--testdata"):
        terminalreporter.write_line(
            "third-party suites NOT run: --testdata was not given (CI passes ../shared/testdata)",
            yellow=True,
        )
    for name, n in sorted(_COUNTS.items()):
        terminalreporter.write_line(f"suite {name}: {n} cases checked")
