"""A data node site for tests: files on disk, an index with their records, two nodes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from esgf_ha.common.auth import issue_token
from tests.datanode_data import DrsDataset, batch_for, write_dataset, write_types_file
from tests.servers import DataServer, IndexServer

ROOT = "esg_dataroot"


@dataclass
class Site:
    index: IndexServer
    node: DataServer
    other: DataServer  # a second site's node, holding the file this one lacks
    public: DrsDataset
    restricted: DrsDataset
    missing: DrsDataset  # published for `other` only
    ghost: DrsDataset  # published for both nodes, held by neither
    root: Path
    big: Path

    def url(self, rel: str, root: str = ROOT) -> str:
        return f"/thredds/fileServer/{root}/{rel}"

    def token(self, *scopes: str) -> str:
        return issue_token(self.index.state_dir, list(scopes), subject="tests")


@contextmanager
def make_site(base: Path) -> Iterator[Site]:
    """An index, a data node with a public and a restricted root, and a second site's
    node holding a dataset the first one lacks; every file's records published."""
    root, secret, other_root = base / "data", base / "secret", base / "other"
    public = write_dataset(root, seed=1)
    restricted = write_dataset(secret, seed=2, variable_id="pr")
    missing = write_dataset(other_root, seed=3, experiment_id="ssp585")
    ghost = write_dataset(base / "nowhere", seed=4, experiment_id="piControl")
    write_types_file(root / "types" / "types.nc")
    big = root / "big" / "blob.bin"
    big.parent.mkdir()
    big.write_bytes(os.urandom(8 << 20))
    (root / "big" / ".hidden").write_bytes(b"secret")
    outside = base / "outside.txt"
    outside.write_text("outside the root")
    (root / "big" / "escape.txt").symlink_to(outside)
    (root / "big" / "inside.bin").symlink_to(big)
    index = IndexServer(base / "master").start()
    key = index.state_dir / "keys" / "token-signing.pub.pem"
    node = DataServer(
        base / "node",
        {ROOT: root, "restricted": secret},
        index_url=index.url,
        extra_args=["--restricted", "restricted", "--token-public-key", str(key)],
    ).start()
    other = DataServer(base / "other-node", {ROOT: other_root}, index_url=index.url).start()
    batch = batch_for([public], node.host, node.url)
    batch["datasets"] += batch_for([restricted], node.host, node.url, root_name="restricted")[  # type: ignore[operator]
        "datasets"
    ]
    batch["datasets"] += batch_for([missing], other.host, other.url)["datasets"]  # type: ignore[operator]
    batch["datasets"] += batch_for([ghost], other.host, other.url)["datasets"]  # type: ignore[operator]
    batch["datasets"] += batch_for([ghost], node.host, node.url)["datasets"]  # type: ignore[operator]
    r = index.publish(batch)
    assert r.status_code == 200, r.text
    try:
        yield Site(index, node, other, public, restricted, missing, ghost, root, big)
    finally:
        node.stop()
        other.stop()
        index.stop()
