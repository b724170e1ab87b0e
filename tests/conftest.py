from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from esgf_ha.records.samples import SampleDataset, as_batch, cmip5_samples, cmip6_samples
from tests.leftovers import reap_leftovers, tag_this_run
from tests.servers import IndexServer

RUN_TAG = tag_this_run()

# Tests that bring up whole federations, BIND or podman: they use fixed loopback addresses and
# ports and podman's one container store, so under pytest-xdist they run one after another on
# one worker. Every other module also runs whole on one worker: its module-wide servers start
# once, and some of its tests read what an earlier one wrote.
SYSTEM_MODULES = frozenset(
    f"tests/{name}.py"
    for name in (
        "test_containers", "test_deploy_compose", "test_dns", "test_dns_ha",
        "test_federation", "test_kubernetes",
    )
)  # fmt: skip


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "whole-system tests" if module in SYSTEM_MODULES else module

    return ByModule(config, log)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a process it started is still alive: a test or fixture that leaves
    a service behind would otherwise go unnoticed until a port or a state dir collides."""
    if hasattr(session.config, "workerinput"):
        return  # a pytest-xdist worker: the controller checks once every worker has finished
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
