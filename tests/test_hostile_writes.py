"""Hostile input on the write path, against a real master (and a replica) on loopback.

Each class of defect is a family: every numeric field with every non-finite or oversized value,
every character XML cannot carry, every write endpoint with a token bound to another data node,
every size limit. Each refusal must be a clear 4xx that changes nothing (the search shows the
old records, the change-log position stays), and searches in JSON and XML must still answer.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from xml.sax.saxutils import escape

import httpx
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from defusedxml import ElementTree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esgf_ha.common.auth import issue_token
from esgf_ha.common.tls import issue_client_cert
from esgf_ha.index.store import Store
from esgf_ha.records.samples import SampleDataset, as_batch, cmip6_samples
from tests.replicas import caught_up, start_replica
from tests.servers import IndexServer

DN_A = "dn-a.example.org"
DN_B = "dn-b.example.org"
POOL_A = cmip6_samples(240, seed=7, data_node=DN_A)
POOL_B = cmip6_samples(3, seed=8, data_node=DN_B)
_unused = count(3)


def _copy(sample: SampleDataset) -> SampleDataset:
    return SampleDataset(orjson.loads(orjson.dumps(sample.dataset)),
                         orjson.loads(orjson.dumps(sample.files)), {})  # fmt: skip


def fresh() -> SampleDataset:
    """A dataset of data node A that no test publishes (tests that expect a refusal use it)."""
    return _copy(POOL_A[1])


def unused() -> SampleDataset:
    """A dataset of data node A not published yet, for publications that succeed."""
    return _copy(POOL_A[next(_unused)])


def entry(sample: SampleDataset) -> dict:
    return {"dataset": sample.dataset, "files": sample.files}


def doc_xml(record: dict) -> bytes:
    parts = ["<doc>"]
    for name, value in record.items():
        for v in value if isinstance(value, list) else [value]:
            parts.append(f'<field name="{escape(name)}">{escape(str(v))}</field>')
    return ("".join(parts) + "</doc>").encode()


# -- the world: a master with one dataset of each data node, and a replica following it ------


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexServer]:
    server = IndexServer(tmp_path_factory.mktemp("hostile-writes") / "master").start()
    try:
        r = server.publish(as_batch([POOL_A[0], POOL_B[0]]))
        assert r.status_code == 200, r.text
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def replica(master: IndexServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexServer]:
    server = start_replica(tmp_path_factory.mktemp("hostile-writes-replica") / "r", master)
    try:
        yield server
    finally:
        server.stop()


def bearer(server: IndexServer, **binding: list[str]) -> dict[str, str]:
    token = issue_token(server.state_dir, ["esgf:publish"], subject="tests", **binding)
    return {"Authorization": f"Bearer {token}"}


def seq_of(server: IndexServer) -> int:
    with server.client() as c:
        r = c.get("/esg-search/search", params={"limit": 0})
    return int(r.headers["X-ESGF-Index-Sequence"])


def searches_answer(server: IndexServer) -> None:
    """Default (XML) and JSON searches of every core answer 200 with a well-formed body."""
    with server.client() as c:
        for core in ("Dataset", "File"):
            xml = c.get("/esg-search/search", params={"type": core, "limit": 200})
            assert xml.status_code == 200, xml.text[:500]
            ElementTree.fromstring(xml.content)
            js = c.get(
                "/esg-search/search",
                params={"type": core, "limit": 200, "format": "application/solr+json"},
            )
            assert js.status_code == 200, js.text[:500]
            js.json()


def state(server: IndexServer) -> tuple[int, list[dict]]:
    """The change-log position and every record, as a search shows them."""
    docs = []
    for core in ("Dataset", "File"):
        body = server.search(type=core, limit=1000)
        docs += sorted(
            ({k: v for k, v in d.items() if k != "score"} for d in body["response"]["docs"]),
            key=lambda d: d["id"],
        )
    return seq_of(server), docs


def assert_unchanged(server: IndexServer, before: tuple[int, list[dict]]) -> None:
    assert state(server) == before
    searches_answer(server)


def assert_refused(r: httpx.Response, status: int, *fragments: str) -> None:
    assert r.status_code == status, r.text[:500]
    for fragment in fragments:
        assert fragment in r.text, r.text[:500]
    if r.headers.get("content-type", "").startswith("application/json"):
        assert r.json()["ok"] is False
    else:
        assert 'status="error"' in r.text


def post_batch(server: IndexServer, batch: object, headers: dict | None = None) -> httpx.Response:
    with server.client() as c:
        return c.post(
            "/api/v1/publish", content=orjson.dumps(batch), headers=headers or server.auth()
        )


# -- 1. numbers and dates ------------------------------------------------------------------

FLOAT_FIELDS = ["north_degrees", "south_degrees", "east_degrees", "west_degrees", "height_top"]
NOT_FINITE = ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e999", "-1e400", "twelve"]
INT_FIELDS = {"size": 2**63, "number_of_files": 2**31, "number_of_aggregations": 2**31}
DATE_FIELDS = ["datetime_start", "datetime_stop", "timestamp", "creation_date"]
BAD_DATES = [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-00:30",
    "0000-06-01T00:00:00Z",
    "2020-02-30T00:00:00Z",
    "2020-13-01T00:00:00Z",
    "yesterday",
]


@pytest.mark.parametrize("value", NOT_FINITE)
def test_numbers_must_be_finite(master: IndexServer, value: str) -> None:
    before = state(master)
    for field in FLOAT_FIELDS:
        for target in ("dataset", "file"):
            sample = fresh()
            record = sample.dataset if target == "dataset" else sample.files[0]
            record[field] = value
            assert_refused(post_batch(master, {"datasets": [entry(sample)]}), 400, field)
        with master.client() as c:
            body = doc_xml({**fresh().dataset, field: value})
            r = c.post("/esg-search/ws/publish", content=body, headers=master.auth())
        assert_refused(r, 400, field)
    assert_unchanged(master, before)


@pytest.mark.parametrize("target", ["dataset", "file"])
@pytest.mark.parametrize("field", sorted(INT_FIELDS))
def test_integers_must_fit_their_type(master: IndexServer, field: str, target: str) -> None:
    before = state(master)
    for value in (str(INT_FIELDS[field]), "9" * 30, "9" * 5000, "1.5", "0x10", "nan"):
        sample = fresh()
        record = sample.dataset if target == "dataset" else sample.files[0]
        record[field] = value
        assert_refused(post_batch(master, {"datasets": [entry(sample)]}), 400, field)
    assert_unchanged(master, before)


@pytest.mark.parametrize("value", BAD_DATES)
def test_dates_must_be_in_the_calendar(master: IndexServer, value: str) -> None:
    before = state(master)
    for field in DATE_FIELDS:
        sample = fresh()
        sample.dataset[field] = value
        assert_refused(post_batch(master, {"datasets": [entry(sample)]}), 400, field)
        with master.client() as c:
            body = doc_xml(sample.dataset)
            r = c.post("/esg-search/ws/publish", content=body, headers=master.auth())
        assert_refused(r, 400, field)
    assert_unchanged(master, before)


def test_dates_of_early_years_keep_four_digits(master: IndexServer) -> None:
    sample = unused()
    sample.dataset["datetime_start"] = "0850-01-01T00:00:00Z"
    sample.dataset["datetime_stop"] = "0001-01-01T00:30:00+00:30"
    assert post_batch(master, {"datasets": [entry(sample)]}).status_code == 200
    doc = master.search(id=sample.dataset["id"])["response"]["docs"][0]
    assert (doc["datetime_start"], doc["datetime_stop"]) == (
        "0850-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
    )
    searches_answer(master)


# -- 2. characters -------------------------------------------------------------------------

NOT_XML = [chr(c) for c in range(0x20) if c not in (0x9, 0xA, 0xD)] + ["\ufffe", "\uffff"]
CONTROL_ONLY = ["\t", "\n", "\r", "\x7f", "\x85", "\x9f"]  # XML allows them; names may not
FREE_TEXT_FIELDS = ["description", "project", "experiment_title", "comment"]
STRICT_FIELDS = ["id", "data_node", "title", "url", "checksum"]


def _put(sample: SampleDataset, field: str, char: str) -> None:
    if field == "url":
        sample.files[0]["url"] = [f"http://{DN_A}/a{char}b.nc|application/netcdf|HTTPServer"]
    elif field == "checksum":
        sample.files[0]["checksum"] = [f"ab{char}cd"]
    elif field == "id":
        sample.dataset["id"] = f"x{char}y|{DN_A}"
        for f in sample.files:
            f["dataset_id"] = sample.dataset["id"]
    else:
        sample.dataset[field] = f"text{char}more"


@pytest.mark.parametrize("char", NOT_XML, ids=lambda c: f"U+{ord(c):04X}")
def test_characters_xml_cannot_carry_are_refused(master: IndexServer, char: str) -> None:
    before = state(master)
    for field in FREE_TEXT_FIELDS + STRICT_FIELDS:
        sample = fresh()
        _put(sample, field, char)
        r = post_batch(master, {"datasets": [entry(sample)]})
        assert_refused(r, 400, f"U+{ord(char):04X}", f"'{field}'")
    assert_unchanged(master, before)


@pytest.mark.parametrize("char", CONTROL_ONLY, ids=lambda c: f"U+{ord(c):04X}")
def test_control_characters_in_names_ids_and_urls_are_refused(
    master: IndexServer, char: str
) -> None:
    before = state(master)
    for field in STRICT_FIELDS:
        sample = fresh()
        _put(sample, field, char)
        r = post_batch(master, {"datasets": [entry(sample)]})
        assert_refused(r, 400, f"U+{ord(char):04X}", f"'{field}'")
    assert_unchanged(master, before)


@pytest.mark.parametrize("char", [*NOT_XML[:3], *CONTROL_ONLY], ids=lambda c: f"U+{ord(c):04X}")
def test_control_characters_in_field_names_are_refused(master: IndexServer, char: str) -> None:
    sample, before = fresh(), state(master)
    sample.dataset[f"my{char}field"] = "value"
    assert_refused(post_batch(master, {"datasets": [entry(sample)]}), 400, "field name")
    assert_unchanged(master, before)


@pytest.mark.parametrize("ref", ["&#9;", "&#10;", "&#13;", "&#x85;", "&#127;"])
def test_ws_publish_refuses_control_characters_in_ids(master: IndexServer, ref: str) -> None:
    before = state(master)
    record = {**fresh().dataset, "type": "Dataset"}
    body = doc_xml(record).replace(escape(record["id"]).encode(), f"x{ref}y|{DN_A}".encode(), 1)
    with master.client() as c:
        r = c.post("/esg-search/ws/publish", content=body, headers=master.auth())
    assert_refused(r, 400, "'id'")
    assert_unchanged(master, before)


def test_tab_and_newline_in_free_text_are_kept(master: IndexServer) -> None:
    sample = unused()
    sample.dataset["description"] = "line one\n\tline two\r\n"
    assert post_batch(master, {"datasets": [entry(sample)]}).status_code == 200
    doc = master.search(id=sample.dataset["id"])["response"]["docs"][0]
    assert doc["description"] == ["line one\n\tline two\r\n"]
    searches_answer(master)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40))
def test_any_text_is_refused_or_renders(master: IndexServer, text: str) -> None:
    """Whatever text a publisher sends: a clear 400, or stored and shown in JSON and XML."""
    sample = unused()
    sample.dataset["description"] = text
    sample.dataset["comment"] = [text, "plain"]
    r = post_batch(master, {"datasets": [entry(sample)]})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert "U+" in r.json()["error"]
        return
    with master.client() as c:
        xml = c.get("/esg-search/search", params={"id": sample.dataset["id"]})
    assert xml.status_code == 200
    shown = ElementTree.fromstring(xml.content).find(".//arr[@name='description']/str")
    assert shown is not None
    # XML parsers turn a CR (alone or before LF) into LF: that is XML, not a loss of ours
    assert shown.text == text.replace("\r\n", "\n").replace("\r", "\n")


# -- 3. publishers overwriting each other --------------------------------------------------


def _b_file() -> dict:
    return POOL_B[0].files[0]


def test_batch_cannot_take_a_file_id_of_another_dataset(master: IndexServer) -> None:
    before = state(master)
    sample = fresh()
    stolen = {**sample.files[0], "id": _b_file()["id"], "url": ["http://evil/x|a|HTTPServer"]}
    sample.files[0] = stolen
    r = post_batch(master, {"datasets": [entry(sample)]})
    assert_refused(r, 409, _b_file()["id"], POOL_B[0].dataset["id"])
    assert_unchanged(master, before)


def test_two_datasets_of_one_batch_cannot_share_a_file_id(master: IndexServer) -> None:
    before = state(master)
    one, two = fresh(), unused()
    two.files[0]["id"] = one.files[0]["id"]
    r = post_batch(master, {"datasets": [entry(one), entry(two)]})
    assert_refused(r, 409, one.files[0]["id"])
    assert_unchanged(master, before)


def test_batch_file_naming_another_dataset_is_refused(master: IndexServer) -> None:
    before = state(master)
    sample = fresh()
    sample.files[0]["dataset_id"] = POOL_B[0].dataset["id"]
    assert_refused(post_batch(master, {"datasets": [entry(sample)]}), 400, "must be a File of")
    assert_unchanged(master, before)


def test_ws_publish_cannot_move_a_file_to_another_dataset(master: IndexServer) -> None:
    before = state(master)
    record = {**_b_file(), "dataset_id": fresh().dataset["id"], "type": "File"}
    with master.client() as c:
        r = c.post("/esg-search/ws/publish", content=doc_xml(record), headers=master.auth())
    assert_refused(r, 409, "cannot move between datasets")
    assert_unchanged(master, before)


def test_ws_publish_follows_the_version_rules(master: IndexServer) -> None:
    """Like /api/v1/publish: a published version's records change only by a new version."""
    published = POOL_B[0]
    with master.client() as c:
        before = state(master)
        changed = {**published.dataset, "title": "replaced by someone else"}
        r = c.post("/esg-search/ws/publish", content=doc_xml(changed), headers=master.auth())
        assert_refused(r, 409, "already published")
        new_file = {**fresh().files[0], "dataset_id": published.dataset["id"], "data_node": DN_B}
        new_file["id"] = "extra.nc|" + DN_B
        r = c.post("/esg-search/ws/publish", content=doc_xml(new_file), headers=master.auth())
        assert_refused(r, 409, "already published")
        stored = [d for d in before[1] if published.dataset["id"] in (d["id"], d.get("dataset_id"))]
        stored_file = next(d for d in stored if d["type"] == "File")
        other_sum = {**stored_file, "checksum": ["0" * 64]}
        r = c.post("/esg-search/ws/publish", content=doc_xml(other_sum), headers=master.auth())
        assert_refused(r, 409)
        assert_unchanged(master, before)
        # the same records again, as the index holds them: accepted, nothing written
        for record in sorted(stored, key=lambda d: d["type"] == "Dataset"):
            r = c.post("/esg-search/ws/publish", content=doc_xml(record), headers=master.auth())
            assert r.status_code == 200, r.text
        assert_unchanged(master, before)


def test_ws_update_cannot_move_records_between_datasets(master: IndexServer) -> None:
    before = state(master)
    update = (
        f'<updates core="files" action="set"><update><query>id={escape(_b_file()["id"])}'
        f'</query><field name="dataset_id"><value>{escape(POOL_A[0].dataset["id"])}</value>'
        "</field></update></updates>"
    ).encode()
    with master.client() as c:
        r = c.post("/esg-search/ws/update", content=update, headers=master.auth())
    assert_refused(r, 400, "dataset_id cannot be updated")
    assert_unchanged(master, before)


def _b_writes() -> list[tuple[str, str, dict]]:
    """Every write endpoint, aimed at data node B's records (method, path, request kwargs)."""
    b_ds, b_file = POOL_B[0].dataset, _b_file()
    mine_with_foreign_file = fresh()
    mine_with_foreign_file.files[0]["data_node"] = DN_B
    update = (
        '<updates core="datasets" action="set"><update><query>id=' + escape(b_ds["id"]) +
        '</query><field name="latest"><value>false</value></field></update></updates>'
    ).encode()  # fmt: skip
    takeover = (
        '<updates core="datasets" action="set"><update><query>id='
        + escape(POOL_A[0].dataset["id"])
        + f'</query><field name="data_node"><value>{DN_B}</value></field></update></updates>'
    ).encode()
    new_b = cmip6_samples(2, seed=8, data_node=DN_B)[1]
    return [
        ("api_publish", "/api/v1/publish", {"content": orjson.dumps({"datasets": [entry(new_b)]})}),
        ("api_publish_child", "/api/v1/publish",
         {"content": orjson.dumps({"datasets": [entry(mine_with_foreign_file)]})}),
        ("api_retract", "/api/v1/retract", {"json": {"ids": [b_ds["id"]]}}),
        ("api_delete", "/api/v1/delete", {"json": {"ids": [b_ds["id"]]}}),
        ("api_delete_file", "/api/v1/delete", {"json": {"ids": [b_file["id"]]}}),
        ("ws_publish", "/esg-search/ws/publish", {"content": doc_xml(new_b.dataset)}),
        ("ws_publish_replace", "/esg-search/ws/publish",
         {"content": doc_xml({**b_file, "data_node": DN_A})}),
        ("ws_update", "/esg-search/ws/update", {"content": update}),
        ("ws_update_takeover", "/esg-search/ws/update", {"content": takeover}),
        ("ws_retract", "/esg-search/ws/retract", {"data": {"id": b_ds["id"]}}),
        ("ws_delete", "/esg-search/ws/delete", {"data": {"id": b_ds["id"]}}),
        ("ws_unpublish", "/esg-search/ws/unpublish", {"content": doc_xml({"id": b_ds["id"]})}),
    ]  # fmt: skip


@pytest.mark.parametrize("name", [w[0] for w in _b_writes()])
def test_token_bound_to_one_data_node_cannot_write_another(master: IndexServer, name: str) -> None:
    _, path, kwargs = next(w for w in _b_writes() if w[0] == name)
    before = state(master)
    with master.client() as c:
        r = c.post(path, headers=bearer(master, data_nodes=[DN_A]), **kwargs)
    assert_refused(r, 403, DN_B, "bound to")
    assert_unchanged(master, before)


def test_token_bound_to_a_project_cannot_write_another(master: IndexServer) -> None:
    before = state(master)
    headers = bearer(master, data_nodes=[DN_A], projects=["CMIP5"])
    r = post_batch(master, {"datasets": [entry(fresh())]}, headers)
    assert_refused(r, 403, "project", "CMIP5")
    assert_unchanged(master, before)


def test_bound_token_writes_its_own_records(master: IndexServer) -> None:
    headers = bearer(master, data_nodes=[DN_A], projects=["CMIP6"])
    mine = unused()
    assert post_batch(master, {"datasets": [entry(mine)]}, headers).status_code == 200
    with master.client() as c:
        r = c.post("/api/v1/retract", json={"ids": [mine.dataset["id"]]}, headers=headers)
        assert r.status_code == 200, r.text
        ws = unused()
        for record in [*ws.files, ws.dataset]:
            r = c.post("/esg-search/ws/publish", content=doc_xml(record), headers=headers)
            assert r.status_code == 200, r.text
        r = c.post("/esg-search/ws/delete", data={"id": ws.dataset["id"]}, headers=headers)
        assert r.status_code == 200, r.text
    assert master.search(id=mine.dataset["id"])["response"]["docs"][0]["retracted"] is True
    assert master.search(id=ws.dataset["id"])["response"]["numFound"] == 0


def test_token_cli_issues_bound_tokens(master: IndexServer) -> None:
    run = [sys.executable, "-m", "esgf_ha", "token", "issue", "--state-dir", str(master.state_dir)]
    out = subprocess.run(
        [*run, "--scope", "esgf:publish", "--data-node", DN_A],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {out.stdout.strip()}"}
    before = state(master)
    with master.client() as c:
        r = c.post("/api/v1/retract", json={"ids": [POOL_B[0].dataset["id"]]}, headers=headers)
    assert_refused(r, 403, DN_B)
    assert_unchanged(master, before)
    refused = subprocess.run(
        [*run, "--scope", "esgf:publish", "--project", "CMIP6"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0 and "--data-node" in refused.stderr


def test_refused_writes_reach_no_replica(master: IndexServer, replica: IndexServer) -> None:
    caught_up(replica, master)
    before = state(replica)
    sample = fresh()
    sample.dataset["north_degrees"] = "nan"
    assert post_batch(master, {"datasets": [entry(sample)]}).status_code == 400
    with master.client() as c:
        r = c.post(
            "/api/v1/delete",
            json={"ids": [POOL_B[0].dataset["id"]]},
            headers=bearer(master, data_nodes=[DN_A]),
        )
    assert r.status_code == 403
    caught_up(replica, master)
    assert_unchanged(replica, before)


# -- 4. sizes ------------------------------------------------------------------------------


def test_record_with_too_many_fields_is_refused(master: IndexServer) -> None:
    before = state(master)
    sample = fresh()
    sample.dataset.update({f"field_{i}": "x" for i in range(20_000)})
    assert_refused(post_batch(master, {"datasets": [entry(sample)]}), 413, "max_record_fields")
    with master.client() as c:
        body = doc_xml({**sample.dataset, "type": "Dataset"})
        r = c.post("/esg-search/ws/publish", content=body, headers=master.auth())
    assert_refused(r, 413, "max_record_fields")
    assert_unchanged(master, before)


def test_oversized_values_are_refused(master: IndexServer) -> None:
    before = state(master)
    sample = fresh()
    sample.dataset["description"] = "x" * 70_000
    assert_refused(post_batch(master, {"datasets": [entry(sample)]}), 413, "max_value_chars")
    sample = fresh()
    sample.dataset["variable"] = [f"v{i}" for i in range(10_001)]
    assert_refused(post_batch(master, {"datasets": [entry(sample)]}), 413, "max_field_values")
    update = (
        f'<updates core="datasets" action="set"><update><query>id={POOL_A[0].dataset["id"]}'
        f'</query><field name="comment"><value>{"y" * 70_000}</value></field></update></updates>'
    ).encode()
    with master.client() as c:
        r = c.post("/esg-search/ws/update", content=update, headers=master.auth())
    assert_refused(r, 413, "max_value_chars")
    assert_unchanged(master, before)


def test_batch_with_too_many_records_is_refused(master: IndexServer) -> None:
    before = state(master)
    sample = fresh()
    files = [{"id": f"f{i}.nc|{DN_A}", "title": f"f{i}.nc"} for i in range(25_001)]
    batch = {"datasets": [{"dataset": sample.dataset, "files": files}]}
    assert_refused(post_batch(master, batch), 413, "max_batch_records")
    assert_unchanged(master, before)


def test_too_many_ids_or_updates_are_refused(master: IndexServer) -> None:
    before = state(master)
    ids = [POOL_B[0].dataset["id"]] + [f"x{i}" for i in range(25_000)]
    with master.client() as c:
        r = c.post("/api/v1/retract", json={"ids": ids}, headers=master.auth())
        assert_refused(r, 413, "max_batch_records")
        r = c.post("/esg-search/ws/delete", data={"id": ids}, headers=master.auth())
        assert_refused(r, 413, "max_batch_records")
        one = "<update><query>id=x</query><field name='a'><value>b</value></field></update>"
        body = f'<updates core="datasets" action="set">{one * 25_001}</updates>'.encode()
        r = c.post("/esg-search/ws/update", content=body, headers=master.auth())
        assert_refused(r, 413, "max_batch_records")
    assert_unchanged(master, before)


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_oversized_body_is_refused_while_streaming(tmp_path: Path, declared: bool) -> None:
    """A 31 MB batch (a 30 MB value in one record): refused before it is parsed, with the
    master's peak memory barely moved (it grew by 750 MB when such a batch was parsed)."""
    master = IndexServer(tmp_path / "rss").start()
    try:
        _refused_without_growth(master, declared)
    finally:
        master.stop()


def _refused_without_growth(master: IndexServer, declared: bool) -> None:
    before = state(master)
    assert master.proc is not None
    peak = _vm_hwm_kib(master.proc.pid)
    sample = fresh()
    sample.dataset["description"] = "z" * (30 * 1024 * 1024)
    body = orjson.dumps({"datasets": [entry(sample)]})
    del sample

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1 << 20):
            yield body[i : i + (1 << 20)]

    with master.client() as c:
        try:
            r = c.post(
                "/api/v1/publish",
                content=body if declared else chunks(),
                headers=master.auth(),
            )
        except httpx.WriteError:  # the server may answer and close before the upload ends
            r = None
    if r is not None:
        assert_refused(r, 413, "max_body_bytes")
    grown_mib = (_vm_hwm_kib(master.proc.pid) - peak) / 1024
    assert grown_mib < 80, f"the master's peak memory grew by {grown_mib:.0f} MiB"
    assert_unchanged(master, before)


def test_oversized_ws_body_is_refused(master: IndexServer) -> None:
    before = state(master)
    record = {**fresh().dataset, "type": "Dataset", "comment": ["c" * 60_000] * 80}
    with master.client() as c:
        r = c.post("/esg-search/ws/publish", content=doc_xml(record), headers=master.auth())
    assert_refused(r, 413, "max_ws_body_bytes")
    assert_unchanged(master, before)


def test_limits_are_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESGF_HA_INDEX_MAX_BATCH_RECORDS", "3")
    monkeypatch.setenv("ESGF_HA_INDEX_MAX_VALUE_CHARS", "500")
    server = IndexServer(tmp_path / "small").start()
    try:
        sample = fresh()
        sample.files = sample.files[:1]
        r = post_batch(server, {"datasets": [entry(sample)] * 2})
        assert_refused(r, 413, "limit of 3 ", "max_batch_records")
        sample.dataset["description"] = "d" * 501
        r = post_batch(server, {"datasets": [entry(sample)]})
        assert_refused(r, 413, "'description'", "limit of 500 ")
        assert server.search(limit=0)["response"]["numFound"] == 0
    finally:
        server.stop()


# -- 5. records a store holds from before these rules: they must render --------------------


def _bad_records() -> list[tuple[str, dict]]:
    base = POOL_A[50]
    ds = {**base.dataset, "latest": True, "replica": False, "retracted": False}
    ds.update(
        north_degrees=float("nan"),  # the store wrote it as null
        south_degrees="nan",
        east_degrees="far east",
        number_of_files="many",
        description=["nul\x00inside", "bell\x07"],
        datetime_start="500-01-01T00:00:00Z",
        _timestamp="2024-01-01T00:00:00Z",
        _version_=1,
    )
    ds["odd\x01name"] = "v"
    ds_nul = {**ds, "id": f"with\x00nul|{DN_A}", "title": "t\x0b", "master_id": "m\x00"}
    f = {**base.files[0], "latest": True, "replica": False, "retracted": False}
    f["dataset_id"] = ds["id"]
    f["url"] = [
        f"http://{DN_A}/x.nc\nEOF--dataset.file.url.chksum_type.chksum\ntouch /tmp/pwned"
        "|application/netcdf|HTTPServer"
    ]
    f["size"] = None
    good = {**f, "id": f"good.nc|{DN_A}", "title": "good.nc", "size": 1}
    good["url"] = [f"http://{DN_A}/good.nc|application/netcdf|HTTPServer"]
    return [("Dataset", ds), ("Dataset", ds_nul), ("File", f), ("File", good)]


def test_records_stored_before_validation_still_render(tmp_path: Path) -> None:
    state_dir = tmp_path / "old-master"
    state_dir.mkdir()
    store = Store(state_dir / "index.sqlite3")
    with store.transaction() as txn:
        for core, record in _bad_records():
            txn.insert(core, record)
        txn.log("publish", {"datasets": ["legacy"]})
    store.close()
    master = IndexServer(state_dir).start()
    replica = None
    try:
        replica = start_replica(tmp_path / "replica", master)
        caught_up(replica, master)
        for server in (master, replica):
            searches_answer(server)
            with server.client() as c:
                body = c.get("/esg-search/search", params={"limit": 10}).content
                assert b"\x00" not in body and b"\x07" not in body
                r = c.get("/esg-search/wget", params={"type": "File", "limit": 10})
                assert r.status_code == 200
                assert "touch /tmp/pwned" not in r.text
                assert r.headers["content-type"].startswith("text/x-sh"), r.text
                check = subprocess.run(
                    ["bash", "-n"], input=r.text, capture_output=True, text=True, timeout=30
                )
                assert check.returncode == 0, check.stderr
    finally:
        if replica is not None:
            replica.stop()
        master.stop()


# -- 6. trust: client certificates only from the federation CA (or one named for it) -------


def _ca(name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_cert, signer_key = issuer if issuer else (None, key)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_cert.subject if signer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(signer_key, hashes.SHA256())
    )
    return cert, key


def _leaf(issuer, name: str, usage, san: x509.GeneralName | None = None):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([san]), critical=False)
    return builder.sign(issuer[1], hashes.SHA256()), key


def _pem(*items) -> bytes:
    out = b""
    for item in items:
        if isinstance(item, x509.Certificate):
            out += item.public_bytes(serialization.Encoding.PEM)
        else:
            out += item.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
    return out


@pytest.fixture
def public_chain(tmp_path: Path) -> dict[str, Path]:
    """A fake public root, an intermediate, a server leaf and a client leaf of that root."""
    import ipaddress

    root = _ca("Fake Public Root")
    inter = _ca("Fake Public Intermediate", root)
    server = _leaf(inter, "127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH,
                   x509.IPAddress(ipaddress.ip_address("127.0.0.1")))  # fmt: skip
    client = _leaf(inter, "anyone.example.com", ExtendedKeyUsageOID.CLIENT_AUTH)
    files = {
        "root": _pem(root[0]),
        "inter": _pem(inter[0]),
        "chain": _pem(server[0], inter[0], root[0]),
        "key": _pem(server[1]),
        "client": _pem(client[0], inter[0], client[1]),
    }
    out = {}
    for name, data in files.items():
        out[name] = tmp_path / f"{name}.pem"
        out[name].write_bytes(data)
    return out


def _tls_client(server: IndexServer, chain: dict[str, Path], cert: Path | None) -> httpx.Client:
    import ssl

    ctx = ssl.create_default_context(cafile=str(chain["root"]))
    if cert is not None:
        ctx.load_cert_chain(str(cert))
    return httpx.Client(base_url=server.url, verify=ctx, timeout=30)


def _publish_with(server: IndexServer, chain: dict[str, Path], cert: Path) -> int | None:
    record = {**fresh().dataset, "type": "Dataset"}
    try:
        with _tls_client(server, chain, cert) as c:
            return c.post("/esg-search/ws/publish", content=doc_xml(record)).status_code
    except httpx.HTTPError:
        return None  # the handshake refused the certificate


def test_served_chain_is_not_trusted_for_client_certificates(
    tmp_path: Path, public_chain: dict[str, Path]
) -> None:
    tls = ["--tls-cert", str(public_chain["chain"]), "--tls-key", str(public_chain["key"])]
    server = IndexServer(tmp_path / "m", tls=True, extra_args=tls).start()
    try:
        assert _publish_with(server, public_chain, public_chain["client"]) in (None, 401)
        assert server_count(server, public_chain) == 0
        ours = issue_client_cert(server.state_dir, "publisher.example.org", tmp_path / "ours.pem")
        assert _publish_with(server, public_chain, ours) == 200
        assert server_count(server, public_chain) == 1
    finally:
        server.stop()
    # an operator who names that CA for client certificates gets what they asked for
    named = [*tls, "--client-ca", str(public_chain["root"])]
    server = IndexServer(tmp_path / "named", tls=True, extra_args=named).start()
    try:
        assert _publish_with(server, public_chain, public_chain["client"]) == 200
    finally:
        server.stop()


def server_count(server: IndexServer, chain: dict[str, Path]) -> int:
    with _tls_client(server, chain, None) as c:
        r = c.get("/esg-search/search", params={"format": "application/solr+json", "limit": 0})
    return int(r.json()["response"]["numFound"])
