"""The HTML views of THREDDS catalogs (`catalog.html`), as a THREDDS server shows them: a
table of the catalog's datasets and catalogRefs (folders link to their own `.html` view, files
to `?dataset=<ID>`), and for one dataset its access links (HTTPServer, OPeNDAP), size, dates
and properties.

They are rendered from the catalog XML of `catalog.py`, so both views always agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from html import escape
from urllib.parse import quote
from xml.etree.ElementTree import Element

from defusedxml import ElementTree

from esgf_ha.datanode.paths import catalog_path

HTML_TYPE = "text/html; charset=utf-8"
_NS = "{http://www.unidata.ucar.edu/namespaces/thredds/InvCatalog/v1.0}"
_XLINK = "{http://www.w3.org/1999/xlink}"
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1rem;color:#1d2733}"
    "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.2rem .6rem;"
    "border-bottom:1px solid #d5dbe2}th{background:#eef2f6}h1{font-size:1.3rem}"
    "h2{font-size:1.1rem}td.size{white-space:nowrap}ol li{margin:.2rem 0}"
)


def _head(title: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>\n"
    )


_TAIL = '<hr><p><a href="/thredds/catalog/catalog.html">THREDDS catalog</a></p></body></html>\n'


def _table_head(title: str) -> str:
    return (
        f"{_head('Catalog ' + title)}<h1>Catalog {escape(title)}</h1>\n"
        "<table><tr><th>Dataset</th><th>Size</th><th>Last Modified</th></tr>\n"
    )


def _size(node: Element) -> str:
    size = node.find(f"{_NS}dataSize")
    if size is None or size.text is None:
        return ""
    return f"{size.text} {size.get('units', '')}".strip()


def _modified(node: Element) -> str:
    for date in node.findall(f"{_NS}date"):
        if date.get("type") == "modified" and date.text:
            return date.text
    return ""


def _ref_row(name: str, href: str, depth: int) -> str:
    html_href = href[:-4] + ".html" if href.endswith(".xml") else href
    pad = "&nbsp;" * 4 * depth
    return (
        f'<tr><td>{pad}📁 <a href="{escape(html_href)}">{escape(name)}/</a></td>'
        "<td></td><td></td></tr>\n"
    )


def _rows(parent: Element, depth: int) -> Iterator[str]:
    for child in parent:
        if child.tag == f"{_NS}catalogRef":
            name = child.get(f"{_XLINK}title") or child.get("name") or ""
            yield _ref_row(name, child.get(f"{_XLINK}href") or "", depth)
        elif child.tag == f"{_NS}dataset":
            name, ident = child.get("name") or "", child.get("ID") or ""
            pad = "&nbsp;" * 4 * depth
            link = f'<a href="?dataset={quote(ident, safe="")}">{escape(name)}</a>'
            yield (
                f'<tr><td>{pad}{link}</td><td class="size">{escape(_size(child))}</td>'
                f"<td>{escape(_modified(child))}</td></tr>\n"
            )
            yield from _rows(child, depth + 1)


def catalog_page(xml: bytes | str) -> str:
    """The table view of a whole catalog."""
    root = ElementTree.fromstring(xml)
    rows = "".join(_rows(root, 0))
    return f"{_table_head(root.get('name') or '')}{rows}</table>\n{_TAIL}"


def _services(root: Element) -> dict[str, tuple[str, str]]:
    """name → (serviceType, base) of every service, compound ones' members included."""
    out: dict[str, tuple[str, str]] = {}
    for service in root.iter(f"{_NS}service"):
        out[service.get("name") or ""] = (
            service.get("serviceType") or "",
            service.get("base") or "",
        )
    return out


def _inherited_service(root: Element, target: Element) -> str | None:
    """The serviceName a dataset inherits (the nearest ancestor's inherited metadata)."""
    found = None

    def walk(node: Element, current: str | None) -> bool:
        nonlocal found
        for meta in node.findall(f"{_NS}metadata"):
            name = meta.find(f"{_NS}serviceName")
            if name is not None and name.text and meta.get("inherited") == "true":
                current = name.text.strip()
        if node is target:
            found = current
            return True
        return any(walk(child, current) for child in node.findall(f"{_NS}dataset"))

    walk(root, None)
    return found


def dataset_page(xml: bytes | str, dataset_id: str) -> str | None:
    """The view of one dataset of a catalog (`catalog.html?dataset=<ID>`); None if absent."""
    root = ElementTree.fromstring(xml)
    target = next((d for d in root.iter(f"{_NS}dataset") if d.get("ID") == dataset_id), None)
    if target is None:
        return None
    services = _services(root)
    access: list[tuple[str, str]] = [
        (a.get("serviceName") or "", a.get("urlPath") or "") for a in target.findall(f"{_NS}access")
    ]
    url_path = target.get("urlPath")
    if url_path and not access:
        name = _inherited_service(root, target) or target.get("serviceName") or ""
        kind, _ = services.get(name, ("", ""))
        members = [n for n, (_, base) in services.items() if kind == "Compound" and base]
        access = [(n, url_path) for n in members] if kind == "Compound" else [(name, url_path)]
    items = []
    for name, path in access:
        kind, base = services.get(name, (name, ""))
        href = base + path + (".html" if kind.lower() == "opendap" else "")
        items.append(
            f'<li><b>{escape(kind or name)}:</b> <a href="{escape(href)}">{escape(href)}</a></li>'
        )
    props = "".join(
        f"<li>{escape(p.get('name') or '')} = {escape(p.get('value') or '')}</li>"
        for p in target.findall(f"{_NS}property")
    )
    name = target.get("name") or ""
    details = [
        f"{_head('Catalog Services')}<h1>Dataset: {escape(name)}</h1>\n<ul>",
        f"<li><em>Data size:</em> {escape(_size(target))}</li>" if _size(target) else "",
        f"<li><em>ID:</em> {escape(dataset_id)}</li>",
        f"<li><em>Modified:</em> {escape(_modified(target))}</li>" if _modified(target) else "",
        "</ul>\n",
        f"<h2>Access:</h2>\n<ol>{''.join(items)}</ol>\n" if items else "",
        f"<h2>Properties:</h2>\n<ul>{props}</ul>\n" if props else "",
        _TAIL,
    ]
    return "".join(details)


def master_head() -> str:
    return _table_head("Earth System Grid catalog")


def master_rows(instance_ids: Iterable[str]) -> str:
    # hrefs relative to /thredds/catalog/esgcet/catalog.html, as in the XML
    return "".join(_ref_row(i, catalog_path(i).removeprefix("esgcet/"), 0) for i in instance_ids)


def master_tail() -> str:
    return f"</table>\n{_TAIL}"
