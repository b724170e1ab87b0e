"""Catalog XML against checked-in golden files.

Regenerating is a separate, deliberate step: `ESGF_HA_REGEN_GOLDEN=1 pytest
tests/test_datanode_golden.py` rewrites the files and then fails every test it rewrote, so a run
with the switch left on can never pass; review `git diff tests/golden` and run again without it.
Under CI (`CI` set) the switch is refused outright.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from esgf_ha.datanode import catalog, catalog_html
from esgf_ha.records.build import FileInfo, build_records
from esgf_ha.records.drs import CMIP6

GOLDEN = Path(__file__).parent / "golden"
FACETS = {
    "mip_era": "CMIP6",
    "activity_drs": "CMIP",
    "institution_id": "MRI",
    "source_id": "MRI-ESM2-0",
    "experiment_id": "historical",
    "member_id": "r1i1p1f1",
    "table_id": "Amon",
    "variable_id": "tas",
    "grid_label": "gn",
}


REGENERATED: list[str] = []


@pytest.fixture(autouse=True)
def _regeneration_fails_the_test() -> Iterator[None]:
    """A regenerating run must not count as a passing one: the files it wrote prove nothing."""
    if os.environ.get("ESGF_HA_REGEN_GOLDEN") and os.environ.get("CI"):
        pytest.fail("ESGF_HA_REGEN_GOLDEN is refused under CI: golden files are checked in")
    REGENERATED.clear()
    yield
    if REGENERATED:
        pytest.fail(
            f"rewritten by ESGF_HA_REGEN_GOLDEN: {', '.join(REGENERATED)}; "
            "review `git diff tests/golden` and run again without it"
        )


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("ESGF_HA_REGEN_GOLDEN"):
        path.write_text(text)
        REGENERATED.append(name)
        return
    assert text == path.read_text(), (
        f"{name} changed; if intended, regenerate with ESGF_HA_REGEN_GOLDEN=1 and review the diff"
    )


def test_dataset_catalog_golden() -> None:
    files = [
        FileInfo(
            name=f"tas_Amon_MRI-ESM2-0_historical_r1i1p1f1_gn_{y}01-{y}12.nc",
            size=40936 + i,
            checksum=f"{i:064x}",
            tracking_id=f"hdl:21.14100/00000000-0000-0000-0000-00000000000{i}",
            mtime="2026-11-25T18:05:14Z",
        )
        for i, y in enumerate((1850, 1851))
    ]
    dataset, records = build_records(
        CMIP6, FACETS, "20190222", files, data_node="esgf-data.example.org",
        index_node="esgf-index.example.org", root_name="esg_dataroot", opendap=True,
        extra={"realm": ["atmos"], "experiment_title": "a & <b> \"quoted\""},
    )  # fmt: skip
    xml = catalog.dataset_catalog(dataset, records, False)
    _check("dataset-catalog.xml", xml)
    _check("file-catalog.xml", catalog.file_catalog(records[1], True))
    _check("dataset-catalog.html", catalog_html.catalog_page(xml))
    page = catalog_html.dataset_page(xml, str(records[0]["instance_id"]))
    assert page is not None
    _check("file-page.html", page)
    # a file published without an OPeNDAP URL has no OPeNDAP access
    _, plain = build_records(
        CMIP6, FACETS, "20190222", files[:1], data_node="esgf-data.example.org",
        index_node="esgf-index.example.org", root_name="esg_dataroot", opendap=False,
    )  # fmt: skip
    without = catalog.dataset_catalog(dataset, plain, False)
    assert (
        'serviceName="HTTPServer" urlPath=' in without and 'OpenDAPServer" urlPath' not in without
    )
    leaf = catalog_html.dataset_page(without, str(plain[0]["instance_id"]))
    assert leaf is not None and "/thredds/fileServer/" in leaf and "/thredds/dodsC/" not in leaf


def test_top_and_master_catalogs_golden() -> None:
    _check("top-catalog.xml", catalog.top_catalog(["esg_dataroot", "restricted"], True))
    ids = ["CMIP6.CMIP.MRI.MRI-ESM2-0.historical.r1i1p1f1.Amon.tas.gn.v20190222"]
    text = catalog.master_head() + catalog.master_refs(ids) + catalog.master_tail()
    _check("master-catalog.xml", text)
