from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from esgf_ha.records.samples import SampleDataset, as_batch, cmip5_samples, cmip6_samples
from tests.servers import IndexServer


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
