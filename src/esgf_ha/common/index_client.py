"""The one client of the index API, sync (`IndexClient`) and async (`AsyncIndexClient`).

Every caller of the index — publisher, replicator, data node, status, demo, supervisor — goes
through here, so they share one retry policy (`common.retry.Backoff`), one way to set timeouts
and TLS (certificates are verified by default; a CA bundle and a client certificate can be
given), one error text and one error pair: `IndexRefused` for a 4xx (retrying will not help)
and `IndexUnreachable` for connection failures and 5xx answers after the last retry. A caller
maps those two onto its own package's errors. Tests may hand in a transport.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypedDict, Unpack

import httpx
import orjson

from esgf_ha.common.retry import Backoff, Transient

Params = Mapping[str, Any] | Sequence[tuple[str, Any]]
Verify = ssl.SSLContext | bool
SOLR_JSON = "application/solr+json"
PAGE = 1000
RETRY = Backoff()  # connection failures and 5xx: about 15 s of waiting in all


class IndexClientError(Exception):
    """The index could not give an answer; `status` is its HTTP status when it sent one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class IndexRefused(IndexClientError):
    """A 4xx: the request is wrong or not allowed, and asking again will not change that."""


class IndexUnreachable(IndexClientError):
    """No usable answer after every retry (or an untrusted certificate, which waiting won't fix)."""

    def __init__(self, message: str, status: int | None = None, *, untrusted: bool = False) -> None:
        super().__init__(message, status)
        self.untrusted = untrusted


def tls_verify(ca: Path | None = None, cert: Path | None = None) -> Verify:
    """What httpx verifies the server with: the system's roots, or `ca` (a PEM bundle); `cert`
    (a PEM holding the client certificate and its key) is presented when the server asks."""
    if ca is None and cert is None:
        return True
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    if cert is not None:
        context.load_cert_chain(str(cert))
    return context


def error_text(response: httpx.Response) -> str:
    """The message of an error answer: our JSON `error`, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return response.text.strip()[:500] or response.reason_phrase


def base_url(url: str) -> str:
    """The index's root from what users give: with or without `/esg-search`, trailing `/`."""
    base = url.rstrip("/")
    if base.endswith("/esg-search"):
        base = base[: -len("/esg-search")]
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"the index URL must be an http(s):// URL, got {url!r}")
    return base


def _pairs(params: Params) -> list[tuple[str, Any]]:
    return list(params.items()) if isinstance(params, Mapping) else list(params)


def _search_params(params: Params) -> list[tuple[str, Any]]:
    given = _pairs(params)
    names = {k for k, _ in given}
    extra = [(k, v) for k, v in (("format", SOLR_JSON), ("distrib", "false")) if k not in names]
    return [*given, *extra]


class ClientSettings(TypedDict, total=False):
    """What both clients are configured with (see `_Core`)."""

    token: str | None
    ca: Path | None
    cert: Path | None
    verify: Verify | None
    timeout: float | httpx.Timeout
    retry: Backoff
    on_retry: Callable[[str], None] | None


class _Core:
    """What both clients share: the settings and how an answer or a failure is judged."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        ca: Path | None = None,
        cert: Path | None = None,
        verify: Verify | None = None,
        timeout: float | httpx.Timeout = 30.0,
        retry: Backoff = RETRY,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        """`verify` (a ready context or False) overrides `ca` and `cert`."""
        self.url = base_url(url)
        self.retry = retry
        self.on_retry = on_retry
        self.verify = tls_verify(ca, cert) if verify is None else verify
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.options: dict[str, Any] = {
            "base_url": self.url,
            "headers": headers,
            "verify": self.verify,
            "timeout": timeout,
        }

    def _judge(self, response: httpx.Response, path: str) -> httpx.Response:
        if response.status_code >= 500:
            raise Transient(
                f"{self.url}{path}: HTTP {response.status_code}: {error_text(response)}"
            )
        if response.status_code >= 400:
            raise IndexRefused(
                f"{path}: HTTP {response.status_code}: {error_text(response)}",
                response.status_code,
            )
        return response

    def _failed(self, exc: httpx.TransportError, path: str) -> Exception:
        text = f"{self.url}{path}: {type(exc).__name__}: {exc or 'connection failed'}"
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return IndexUnreachable(text, untrusted=True)
        return Transient(text)

    def _unreachable(self, exc: httpx.TransportError, path: str) -> IndexUnreachable:
        failure = self._failed(exc, path)
        return failure if isinstance(failure, IndexUnreachable) else IndexUnreachable(str(failure))

    def _gave_up(self, exc: Transient, policy: Backoff) -> IndexUnreachable:
        if not policy.retries:
            return IndexUnreachable(str(exc))
        return IndexUnreachable(f"index unreachable after {policy.retries} retries: {exc}")

    def _readiness(self, response: httpx.Response) -> tuple[int, dict[str, Any]]:
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = {}
        return response.status_code, body if isinstance(body, dict) else {}


class IndexClient(_Core):
    """Blocking client: publishing, command-line tools, status and supervision."""

    def __init__(
        self,
        url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        **settings: Unpack[ClientSettings],
    ) -> None:
        super().__init__(url, **settings)
        self.http = httpx.Client(transport=transport, **self.options)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, *, retry: Backoff | None = None, **kwargs: Any
    ) -> httpx.Response:
        def attempt() -> httpx.Response:
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise self._failed(exc, path) from None
            return self._judge(response, path)

        policy = retry or self.retry
        try:
            return policy.run(attempt, on_retry=self.on_retry)
        except Transient as exc:
            raise self._gave_up(exc, policy) from None

    def get_json(self, path: str, params: Params | None = None, **kwargs: Any) -> Any:
        return orjson.loads(self.request("GET", path, params=params, **kwargs).content)

    def post_json(self, path: str, body: object) -> Any:
        content = orjson.dumps(body)
        headers = {"Content-Type": "application/json"}
        return orjson.loads(self.request("POST", path, content=content, headers=headers).content)

    def search(self, params: Params) -> dict[str, Any]:
        """One page of `/esg-search/search` as Solr JSON, this index only."""
        answer: dict[str, Any] = self.get_json("/esg-search/search", _search_params(params))
        return answer

    def search_all(self, params: Params, page: int = PAGE) -> list[dict[str, Any]]:
        """Every matching record, page by page."""
        docs: list[dict[str, Any]] = []
        while True:
            batch = self.search([*_pairs(params), ("limit", page), ("offset", len(docs))])
            found = batch["response"]["docs"]
            docs.extend(found)
            if not found or len(docs) >= int(batch["response"]["numFound"]):
                return docs

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One attempt, answered whatever its status, for a caller that keeps its own loop and
        reads statuses itself (a health probe, the replica's long-poll); a failure to connect
        is IndexUnreachable."""
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc, path) from None

    def readiness(self, path: str = "/readyz") -> tuple[int, dict[str, Any]]:
        """A health endpoint's status and JSON body, asked once: 503 is an answer here, and
        a probe that retried would report late."""
        return self._readiness(self.send("GET", path))

    def publish(self, entries: list[dict[str, object]]) -> dict[str, object]:
        """POST a batch `[{"dataset": {...}, "files": [...]}]`; all of it commits or none."""
        answer: dict[str, object] = self.post_json("/api/v1/publish", {"datasets": entries})
        return answer

    def retract(self, ids: list[str]) -> dict[str, object]:
        answer: dict[str, object] = self.post_json("/api/v1/retract", {"ids": ids})
        return answer

    def delete(self, ids: list[str]) -> dict[str, object]:
        answer: dict[str, object] = self.post_json("/api/v1/delete", {"ids": ids})
        return answer


class AsyncIndexClient(_Core):
    """Non-blocking client: the data node and the replicator, which do other work meanwhile."""

    def __init__(
        self,
        url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
        **settings: Unpack[ClientSettings],
    ) -> None:
        super().__init__(url, **settings)
        self.http = httpx.AsyncClient(
            transport=transport, limits=limits or httpx.Limits(), **self.options
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(
        self, method: str, path: str, *, retry: Backoff | None = None, **kwargs: Any
    ) -> httpx.Response:
        async def attempt() -> httpx.Response:
            try:
                response = await self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise self._failed(exc, path) from None
            return self._judge(response, path)

        policy = retry or self.retry
        try:
            return await policy.arun(attempt, on_retry=self.on_retry)
        except Transient as exc:
            raise self._gave_up(exc, policy) from None

    async def get_json(self, path: str, params: Params | None = None, **kwargs: Any) -> Any:
        return orjson.loads((await self.request("GET", path, params=params, **kwargs)).content)

    async def post_json(self, path: str, body: object) -> Any:
        content = orjson.dumps(body)
        headers = {"Content-Type": "application/json"}
        response = await self.request("POST", path, content=content, headers=headers)
        return orjson.loads(response.content)

    async def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One attempt, answered whatever its status (see `IndexClient.send`)."""
        try:
            return await self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc, path) from None

    async def readiness(self, path: str = "/readyz") -> tuple[int, dict[str, Any]]:
        return self._readiness(await self.send("GET", path))

    async def search(self, params: Params) -> dict[str, Any]:
        answer: dict[str, Any] = await self.get_json("/esg-search/search", _search_params(params))
        return answer

    async def pages(self, params: Params, page: int = PAGE) -> AsyncIterator[list[dict[str, Any]]]:
        """The matching records, one non-empty page at a time."""
        offset = 0
        while True:
            batch = await self.search([*_pairs(params), ("limit", page), ("offset", offset)])
            docs = batch["response"]["docs"]
            if docs:
                yield docs
            offset += len(docs)
            if not docs or offset >= int(batch["response"]["numFound"]):
                return

    async def search_all(self, params: Params, page: int = PAGE) -> list[dict[str, Any]]:
        return [doc async for docs in self.pages(params, page) for doc in docs]
