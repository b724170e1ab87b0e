"""Catalog XML against checked-in golden files (regenerate: ESGF_HA_REGEN_GOLDEN=1)."""

from __future__ import annotations

import os
from pathlib import Path

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


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("ESGF_HA_REGEN_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; regenerate if intended"


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
