"""The publisher's side of the master index API: batch publish, retract, delete, look-ups.

Connection errors and 5xx answers are retried with the shared backoff: the master may be
restarting. Retrying a publish is safe because the batch endpoint is idempotent (an unchanged
re-publish is a no-op), so a request whose answer was lost does not publish twice. The shared
client's errors become the publisher's own `Rejected` and `Unreachable` here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from esgf_ha.common import index_client
from esgf_ha.common.retry import Backoff
from esgf_ha.publisher.errors import Rejected, Unreachable


class IndexClient(index_client.IndexClient):
    def __init__(
        self,
        index_url: str,
        *,
        token: str | None = None,
        cert: Path | None = None,
        cacert: Path | None = None,
        retries: int = 6,
        backoff: float = 0.5,
        timeout: float = 300.0,
        transport: httpx.BaseTransport | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        try:
            index_client.base_url(index_url)
        except ValueError:
            raise ValueError(f"--index must be an http(s):// URL, got {index_url!r}") from None
        super().__init__(
            index_url,
            token=token,
            ca=cacert,
            cert=cert,
            timeout=timeout,
            retry=Backoff(retries=retries, first=backoff),
            transport=transport,
            on_retry=on_retry,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return super().request(method, path, **kwargs)
        except index_client.IndexRefused as exc:
            raise Rejected(str(exc), exc.status) from None
        except index_client.IndexUnreachable as exc:
            if exc.untrusted:  # waiting will not fix it
                hint = " (give the CA that signed the index's certificate with --cacert)"
                raise Unreachable(f"{exc}{hint}") from None
            raise Unreachable(str(exc), exc.status) from None

    def dataset_ids(self, instance_id: str, data_node: str | None = None) -> list[str]:
        """Ids of the Dataset records with this instance_id (one per data node)."""
        params: dict[str, object] = {
            "type": "Dataset",
            "instance_id": instance_id,
            "fields": "id",
            "limit": 1000,
        }
        if data_node:
            params["data_node"] = data_node
        return [str(d["id"]) for d in self.search(params)["response"]["docs"]]
