"""The publisher's side of the master index API: batch publish, retract, delete, look-ups.

Connection errors and 5xx answers are retried with exponential backoff: the master may be
restarting. Retrying a publish is safe because the batch endpoint is idempotent (an unchanged
re-publish is a no-op), so a request whose answer was lost does not publish twice.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

from esgf_ha.publisher.errors import Rejected, Unreachable


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return response.text.strip()[:500]


class IndexClient:
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
        base = index_url.rstrip("/")
        if base.endswith("/esg-search"):
            base = base[: -len("/esg-search")]
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"--index must be an http(s):// URL, got {index_url!r}")
        verify: ssl.SSLContext | bool = True
        if cacert is not None or cert is not None:
            verify = ssl.create_default_context(cafile=str(cacert) if cacert else None)
            if cert is not None:
                verify.load_cert_chain(str(cert))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = base
        self.retries = retries
        self.backoff = backoff
        self.on_retry = on_retry
        self._http = httpx.Client(
            base_url=base, headers=headers, verify=verify, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> IndexClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                delay = min(self.backoff * 2 ** (attempt - 1), 10.0)
                if self.on_retry is not None:
                    self.on_retry(f"{last}; retry {attempt}/{self.retries} in {delay:.1f} s")
                time.sleep(delay)
            try:
                response = self._http.request(method, path, **kwargs)  # type: ignore[arg-type]
            except httpx.TransportError as exc:
                last = f"{self.url}{path}: {type(exc).__name__}: {exc or 'connection failed'}"
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):  # waiting will not fix it
                    raise Unreachable(
                        f"{last} (give the CA that signed the index's certificate with --cacert)"
                    ) from None
                continue
            if response.status_code >= 500:
                last = f"{self.url}{path}: HTTP {response.status_code}: {_error_text(response)}"
                continue
            if response.status_code >= 400:
                raise Rejected(
                    f"{path}: HTTP {response.status_code}: {_error_text(response)}",
                    response.status_code,
                )
            return response
        raise Unreachable(f"index unreachable after {self.retries} retries: {last}")

    def publish(self, entries: list[dict[str, object]]) -> dict[str, object]:
        """POST a batch `[{"dataset": {...}, "files": [...]}]`; all of it commits or none."""
        body = orjson.dumps({"datasets": entries})
        response = self._request(
            "POST", "/api/v1/publish", content=body, headers={"Content-Type": "application/json"}
        )
        result: dict[str, object] = response.json()
        return result

    def retract(self, ids: list[str]) -> dict[str, object]:
        result: dict[str, object] = self._request(
            "POST", "/api/v1/retract", json={"ids": ids}
        ).json()
        return result

    def delete(self, ids: list[str]) -> dict[str, object]:
        result: dict[str, object] = self._request(
            "POST", "/api/v1/delete", json={"ids": ids}
        ).json()
        return result

    def search(self, **params: object) -> dict[str, object]:
        query = {"format": "application/solr+json", "distrib": "false", **params}
        result: dict[str, object] = self._request("GET", "/esg-search/search", params=query).json()
        return result

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
        docs = self.search(**params)["response"]["docs"]  # type: ignore[index]
        return [str(d["id"]) for d in docs]
