"""What the data node asks the index: the File records of one path (checksum, replicas),
a dataset version with its files (catalogs), and the datasets this node holds. Answers about
single files are cached for a while; nothing is fetched at start-up."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from esgf_ha.common.index_client import AsyncIndexClient, IndexClientError
from esgf_ha.common.retry import Backoff
from esgf_ha.datanode.errors import IndexUnavailable

log = logging.getLogger("esgf_ha.datanode.index")
Record = dict[str, Any]
FILE_FIELDS = (
    "id,instance_id,master_id,dataset_id,data_node,url,size,checksum,checksum_type,"
    "tracking_id,timestamp,title,version,publish_path"
)
PAGE = 10_000


class IndexClient:
    """The shared async client, asked once per question: a file request waits for no retry
    (the node redirects or answers 503 at once, and the user's client may retry)."""

    def __init__(
        self,
        base_url: str,
        *,
        ca: Path | None = None,
        ttl: float = 300.0,
        cache_size: int = 100_000,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.index = AsyncIndexClient(
            base_url, ca=ca, timeout=10.0, retry=Backoff(retries=0), transport=transport
        )
        self.ttl = ttl
        self.cache_size = cache_size
        self._files: OrderedDict[str, tuple[float, list[Record]]] = OrderedDict()

    async def close(self) -> None:
        await self.index.close()

    async def search(self, **params: object) -> dict[str, Any]:
        try:
            return await self.index.search(params)
        except IndexClientError as exc:
            raise IndexUnavailable(f"the index did not answer: {exc}") from None

    async def file_records(self, instance_id: str) -> list[Record]:
        """Every File record (this node's and replicas') of one file version, cached."""
        now = time.monotonic()
        hit = self._files.get(instance_id)
        if hit is not None and hit[0] > now:
            self._files.move_to_end(instance_id)
            return hit[1]
        answer = await self.search(
            type="File", instance_id=instance_id, fields=FILE_FIELDS, limit=100
        )
        docs: list[Record] = answer["response"]["docs"]
        # an unpublished path may be published soon: remember "nothing" only briefly
        self._files[instance_id] = (now + (self.ttl if docs else min(self.ttl, 10.0)), docs)
        self._files.move_to_end(instance_id)
        while len(self._files) > self.cache_size:
            self._files.popitem(last=False)
        return docs

    async def dataset(self, instance_id: str, data_node: str | None) -> Record | None:
        docs = (await self.search(type="Dataset", instance_id=instance_id, limit=100))["response"][
            "docs"
        ]
        ours = [d for d in docs if data_node and d.get("data_node") == data_node]
        return (ours or docs or [None])[0]

    async def files_of(self, dataset_id: str) -> list[Record]:
        docs: list[Record] = []
        async for page in self._pages(type="File", dataset_id=dataset_id, fields="*"):
            docs.extend(page)
        return docs

    async def dataset_ids(self, data_node: str | None) -> AsyncIterator[list[str]]:
        """instance_ids of the dataset versions published for this node, page by page."""
        params: dict[str, object] = {"type": "Dataset", "fields": "instance_id"}
        if data_node:
            params["data_node"] = data_node
        async for page in self._pages(**params):
            yield [str(d["instance_id"]) for d in page if d.get("instance_id")]

    async def _pages(self, **params: object) -> AsyncIterator[list[Record]]:
        try:
            async for page in self.index.pages(params, PAGE):
                yield page
        except IndexClientError as exc:
            raise IndexUnavailable(f"the index did not answer: {exc}") from None
