from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from esgf_ha.records.samples import SampleDataset, as_batch, cmip5_samples, cmip6_samples
from tests.leftovers import reap_leftovers, tag_this_run
from tests.servers import IndexServer

RUN_TAG = tag_this_run()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a process it started is still alive: a test or fixture that leaves
    a service behind would otherwise go unnoticed until a port or a state dir collides."""
    left = reap_leftovers(RUN_TAG)
    if left:
        lines = "\n".join(f"  pid {pid}: {command[:200]}" for pid, command in left)
        print(f"\nprocesses started by this test run were still alive (now killed):\n{lines}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def index_server(tmp_path: Path) -> Iterator[IndexServer]:
    server = IndexServer(tmp_path / "master").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def samples() -> list[SampleDataset]:
    return cmip6_samples(40) + cmip5_samples(8)


@pytest.fixture(scope="module")
def loaded_index(
    tmp_path_factory: pytest.TempPathFactory, samples: list[SampleDataset]
) -> Iterator[IndexServer]:
    """A master index holding the sample datasets (module-wide: tests must not write to it)."""
    server = IndexServer(tmp_path_factory.mktemp("loaded") / "master").start()
    r = server.publish(as_batch(samples))
    assert r.status_code == 200, r.text
    yield server
    server.stop()
