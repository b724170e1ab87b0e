"""The bash download script served by `/esg-search/wget`.

It keeps the contract clients and users know: the `# ESG Federation download script` and
`# Search URL:` header lines, and one `'<path>' '<url>' '<checksum_type>' '<checksum>'` line a
file in a here-document. It resumes partial files (`wget -c`), verifies SHA256 or MD5, sends a
bearer token for restricted data when given one, and ends with a report of what failed.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from importlib import resources

TEMPLATE_VERSION = "esgf-ha 1"
_BAD_CHARS = re.compile(r"['<>?*\"\x00-\x1f\x7f-\x9f]")
# a line break in a URL or checksum would end the script's here-document early: such a file
# (stored before records were checked) is left out rather than written
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SEPARATORS = re.compile(r"[ /\\|:;]+")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass
class ScriptFile:
    path: str
    url: str
    checksum_type: str
    checksum: str


def _component(value: str) -> str:
    return _SEPARATORS.sub("_", _BAD_CHARS.sub("", value))[:50]


def files_for_script(
    docs: list[dict[str, object]], structure: list[str], empty: str | None
) -> tuple[list[ScriptFile], int]:
    """Script lines for File records; also how many had no HTTPServer URL."""
    out: list[ScriptFile] = []
    seen: set[str] = set()
    skipped = 0
    for doc in docs:
        url = None
        urls = doc.get("url") or []
        for entry in urls if isinstance(urls, list) else [urls]:
            parts = str(entry).split("|")
            if len(parts) == 3 and parts[2].lower() == "httpserver":
                url = parts[0]  # esg-search keeps the last HTTPServer URL
        if url is None or _CONTROL.search(url):
            skipped += 1
            continue
        name = str(doc.get("title") or url.rsplit("/", 1)[-1])
        dirs = []
        for facet in structure:
            value = doc.get(facet)
            if isinstance(value, list):
                value = value[0] if value else None
            if value is None:
                if empty:
                    dirs.append(_component(empty))
                continue
            dirs.append(_component(str(value)))
        path = "/".join([*dirs, _BAD_CHARS.sub("", name).replace("/", "_")])
        if path in seen:
            continue
        seen.add(path)
        checksum_type, checksum = _first(doc, "checksum_type"), _first(doc, "checksum")
        if _CONTROL.search(checksum_type + checksum):
            skipped += 1
            continue
        out.append(ScriptFile(path, url, checksum_type, checksum))
    return out, skipped


def _first(doc: dict[str, object], field: str) -> str:
    value = doc.get(field)
    if isinstance(value, list):
        return str(value[0]) if value else ""
    return "" if value is None else str(value)


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def render_script(
    files: list[ScriptFile], *, host: str, search_url: str, total: int, limit: int
) -> str:
    template = resources.files("esgf_ha.index").joinpath("wget-template.sh").read_text()
    lines = "\n".join(
        " ".join(_sh_quote(v) for v in (f.path, f.url, f.checksum_type, f.checksum)) for f in files
    )
    messages = []
    if total > len(files) and total > limit:
        messages.append(
            f"Warning! The total number of files was {total} but this script will only "
            f"process {len(files)}."
        )
    messages.append(f"Script created for {len(files)} file(s)")
    message = "\n".join(f"# {m}" for m in messages)
    one_line = re.sub(r"[\r\n]", " ", search_url)
    values = {
        "hostName": host,
        "date": time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime()),
        "searchUrl": one_line,
        "searchUrlQuoted": _sh_quote(one_line),
        "templateVersion": TEMPLATE_VERSION,
        "message": message,
        "files": lines,
    }
    # one pass, so that a value holding `{{...}}` is never substituted again
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
