"""THREDDS catalogs: the top catalog, one per directory, the master catalog and one per dataset
(both from the index), and the HTML view of each."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from esgf_ha.datanode import catalog, catalog_html
from esgf_ha.datanode.errors import NotFound
from esgf_ha.datanode.index_client import IndexClient
from esgf_ha.datanode.paths import catalog_path, split
from esgf_ha.datanode.service import DataNode

NO_INDEX = "this data node has no index to list datasets from"


class Catalogs:
    def __init__(self, node: DataNode) -> None:
        self.node = node
        self.settings = node.settings

    def index(self, why: str = NO_INDEX) -> IndexClient:
        if self.node.index is None:
            raise NotFound(why)
        return self.node.index

    async def top(self, request: Request) -> Response:
        body = catalog.top_catalog(self.node.roots, self.node.index is not None)
        return Response(body, media_type=catalog.XML_TYPE)

    async def top_view(self, request: Request) -> Response:
        return await self.view(request, "catalog.xml")

    async def any(self, request: Request) -> Response:
        path: str = request.path_params["path"]
        if path.endswith(".html"):
            return await self.view(request, path.removesuffix(".html") + ".xml")
        if path == "esgcet/catalog.xml":
            return await self.master(request)
        if path.startswith("esgcet/") and path.endswith(".xml"):
            return await self.dataset(path, request.query_params.get("dataset"))
        if path == "catalog.xml":
            return await self.top(request)
        return await self.directory(path)

    async def directory(self, path: str) -> Response:
        if not path.endswith("/catalog.xml"):
            raise NotFound("catalogs end with catalog.xml or <instance_id>.xml")
        dir_path = path.removesuffix("/catalog.xml")
        root, rel = split(dir_path)
        loc = self.node.locate(dir_path)
        if not loc.path.is_dir():
            raise NotFound("no such directory")
        body = await anyio.to_thread.run_sync(
            catalog.directory_catalog,
            root,
            rel,
            loc.path,
            self.node.roots[root],
            root in self.node.restricted,
        )
        return Response(body, media_type=catalog.XML_TYPE)

    async def view(self, request: Request, xml_path: str) -> Response:
        """`catalog.html` (and `<instance_id>.html`): the HTML view of the XML catalog."""
        only = request.query_params.get("dataset")
        if xml_path == "esgcet/catalog.xml":
            if only is not None:
                raise NotFound("the master catalog lists catalogs, not datasets")
            return await self.master_view(request)
        if xml_path.startswith("esgcet/"):
            source = await self.dataset(xml_path, None)
        elif xml_path == "catalog.xml":
            source = await self.top(request)
        else:
            source = await self.directory(xml_path)
        xml = bytes(source.body)
        if only is None:
            body = await anyio.to_thread.run_sync(catalog_html.catalog_page, xml)
        else:
            page = await anyio.to_thread.run_sync(catalog_html.dataset_page, xml, only)
            if page is None:
                raise NotFound(f"no dataset {only[:200]!r} in this catalog")
            body = page
        return Response(body, media_type=catalog_html.HTML_TYPE)

    async def master_view(self, request: Request) -> Response:
        pages = self.index().dataset_ids(self.settings.data_node or request.headers.get("host"))
        first: list[str] = await anext(pages, [])

        async def body() -> AsyncIterator[str]:
            yield catalog_html.master_head()
            yield catalog_html.master_rows(first)
            async for page in pages:
                yield catalog_html.master_rows(page)
            yield catalog_html.master_tail()

        return StreamingResponse(body(), media_type=catalog_html.HTML_TYPE)

    async def master(self, request: Request) -> Response:
        pages = self.index().dataset_ids(self.settings.data_node or request.headers.get("host"))
        first: list[str] = await anext(pages, [])  # fail with 503 before the status goes out

        async def body() -> AsyncIterator[str]:
            yield catalog.master_head()
            yield catalog.master_refs(first)
            async for page in pages:
                yield catalog.master_refs(page)
            yield catalog.master_tail()

        return StreamingResponse(body(), media_type=catalog.XML_TYPE)

    async def dataset(self, path: str, only: str | None) -> Response:
        index = self.index("this data node has no index to build dataset catalogs from")
        instance = path.rsplit("/", 1)[1].removesuffix(".xml")
        if len(path) > 4096 or catalog_path(instance) != path:
            raise NotFound("dataset catalogs live at esgcet/<master_id as dirs>/<instance_id>.xml")
        dataset = await index.dataset(instance, self.settings.data_node)
        if dataset is None:
            raise NotFound(f"no dataset {instance} in the index")
        files = await index.files_of(str(dataset["id"]))
        restricted = any(
            str(catalog.first(f.get("publish_path")) or "").split("/", 1)[0] in self.node.restricted
            for f in files
        )
        if only and only != instance:
            leaf = [f for f in files if f.get("instance_id") == only]
            if not leaf:
                raise NotFound(f"no dataset {only[:200]!r} in this catalog")
            return Response(catalog.file_catalog(leaf[0], restricted), media_type=catalog.XML_TYPE)
        body = catalog.dataset_catalog(dataset, files, restricted)
        return Response(body, media_type=catalog.XML_TYPE)
