"""Property tests: whatever a client sends, the query parser, the parameter handling and the
engine answer with a result or a clear 4xx error, never an unexpected exception."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from esgf_ha.index import query as lucene
from esgf_ha.index.errors import IndexServiceError, QuerySyntaxError
from esgf_ha.index.params import MAX_LIMIT, MAX_OFFSET, parse_search
from esgf_ha.index.service import IndexService
from esgf_ha.index.words import WordIndex, tokenize
from esgf_ha.records.samples import cmip5_samples, cmip6_samples

LUCENE_BITS = st.sampled_from(
    [
        "project",
        ":",
        "CMIP6",
        "(",
        ")",
        " AND ",
        " OR ",
        " NOT ",
        "-",
        "+",
        "!",
        '"',
        "*",
        "?",
        "[",
        "]",
        "{",
        "}",
        " TO ",
        "\\",
        "variable_id",
        "tas",
        " ",
        "&&",
        "||",
        "^2",
        "~",
        "é",
        "*:*",
        "datetime_start:[",
        "0001-01-01T00:00:00+01:00",
        "NOW+10000YEARS",
        "_timestamp:",
        "size:",
        "999999999999999999999999999999",
        "*a*",
    ]
)
QUERY_TEXT = st.one_of(st.text(max_size=60), st.lists(LUCENE_BITS, max_size=25).map("".join))
NAMES = st.sampled_from(
    [
        "project",
        "variable_id",
        "variable_id!",
        "query",
        "limit",
        "offset",
        "facets",
        "fields",
        "type",
        "latest",
        "replica",
        "distrib",
        "format",
        "start",
        "end",
        "from",
        "to",
        "bbox",
        "min_version",
        "max_version",
        "sort",
        "shards",
        "bogus",
        "lat",
        "id",
        "dataset_id",
        "source_type",
        "size",
        "version",
        "url",
        "title",
        "checksum",
        "_timestamp",
    ]
)
VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "CMIP6",
            "tas",
            "true",
            "False",
            "0",
            "10",
            "10001",
            "-1",
            "*",
            "File",
            "Dataset",
            "application/solr+json",
            "[0,0,10,10]",
            "NOW-1DAY",
            "2020-01-01T00:00:00Z",
            "t*",
            "tas,pr",
            "CESM1(CAM5.1,FV2)",
            # the calendar's edges and numbers beyond any index (issue 12)
            "NOW+10000YEARS",
            "NOW-99999999999999999999DAYS",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "999999999999999999999999999999",
            "2147483648",
            "[-1e309,nan,inf,0]",
        ]
    ),
)


@given(QUERY_TEXT)
@settings(max_examples=400, deadline=None)
def test_parser_returns_a_tree_or_a_syntax_error(text: str) -> None:
    try:
        node = lucene.parse(text)
    except QuerySyntaxError as exc:
        assert exc.status == 400 and exc.message
        return
    assert isinstance(node, lucene.MatchAll | lucene.Term | lucene.Range | lucene.Bool)


@given(st.lists(st.tuples(NAMES, VALUES), max_size=8))
@settings(max_examples=400, deadline=None)
def test_parameters_parse_or_fail_cleanly(params: list[tuple[str, str]]) -> None:
    try:
        req = parse_search(params, {"source_type", "size", "version"})
    except IndexServiceError as exc:
        assert exc.status in (400, 501) and exc.message
        return
    # what is accepted is within the bounds every later step relies on
    assert 0 <= req.limit <= MAX_LIMIT and 0 <= req.offset <= MAX_OFFSET
    assert req.type in ("Dataset", "File", "Aggregation")
    assert all(values for values in req.constraints.values())


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    svc = IndexService.open(Path(tmp_path_factory.mktemp("prop")))
    samples = cmip6_samples(20) + cmip5_samples(4)
    svc.publish_batch({"datasets": [{"dataset": s.dataset, "files": s.files} for s in samples]})
    yield svc
    svc.close()


@given(params=st.lists(st.tuples(NAMES, VALUES), max_size=6), text=QUERY_TEXT)
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_engine_answers_any_valid_request(service: IndexService, params, text: str) -> None:
    try:
        req = parse_search(
            [*params, ("query", text)] if text.strip() else params, service.known_fields()
        )
    except IndexServiceError as exc:
        # anything else (OverflowError, ValueError, ...) fails the test: it would be a 500
        assert exc.status in (400, 501) and exc.message
        return
    try:
        result, docs = service.search(req, 30.0)
    except IndexServiceError as exc:
        assert exc.status == 400 and exc.message
        return
    # the page is exactly the slice of the result the request asked for, of the right type
    assert len(docs) == max(0, min(req.limit, result.total - req.offset))
    assert all(doc["type"] == req.type for doc in docs)
    assert len({doc["id"] for doc in docs}) == len(docs)
    for counts in result.facets.values():
        assert all(0 < c <= result.total for _, c in counts)


FIELD_NAMES = st.sampled_from(
    ["variable_id", "realm", "title", "version", "latest", "size", "number_of_files",
     "north_degrees", "datetime_start", "_timestamp", "score", "my_custom_field"]
)  # fmt: skip
FIELD_VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(-5, 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.sampled_from(["2020-01-01T00:00:00Z", "2020-01-01", "t", "x", "-3", "1.5"]),
    st.lists(st.one_of(st.text(max_size=5), st.integers(), st.booleans()), max_size=3),
)


@given(st.dictionaries(FIELD_NAMES, FIELD_VALUES, max_size=8))
@settings(max_examples=500, deadline=None)
def test_record_normalisation_matches_the_field_rules(fields: dict[str, object]) -> None:
    """normalize_record's per-field fast paths give what normalize_value gives, value by value."""
    from esgf_ha.records.errors import InvalidRecord
    from esgf_ha.records.schema import normalize_record, normalize_value

    base = {"id": "a|n", "type": "Dataset", "data_node": "n", "index_node": "n", "project": "P"}
    raw = {**base, **fields}
    expected: dict[str, object] = {}
    try:
        for name, value in raw.items():
            if name not in ("score", "text") and value not in (None, [], ""):
                expected[name] = normalize_value(name, value)
        version = expected.get("version")
        if version is not None and not str(version).lstrip("v").isdigit():
            raise InvalidRecord("version")
    except InvalidRecord:
        with pytest.raises(InvalidRecord):
            normalize_record(raw)
        return
    record = normalize_record(raw)
    for name, value in expected.items():
        assert record[name] == value and type(record[name]) is type(value), name
    assert "score" not in record


WORD_TEXT = st.text(alphabet="abc?*\n[]. ", max_size=8)


@given(st.lists(WORD_TEXT, max_size=12), st.text(alphabet="abc?*[].", min_size=1, max_size=6))
@example([], "*")  # no words at all: `*` once matched the empty text as a word (KeyError)
@settings(max_examples=400, deadline=None)
def test_wildcard_words_match_as_word_by_word(values: list[str], pattern: str) -> None:
    """The one-pass wildcard match over all words finds exactly the values a word-by-word
    match finds (`*` any run, `?` one character, nothing else special)."""
    values = list(dict.fromkeys(values))
    index = WordIndex()
    index.update(values)
    rx = re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern),
        re.DOTALL,
    )
    expected = {
        code
        for code, value in enumerate(values)
        if any(rx.fullmatch(w) for w in [*tokenize(value), value.lower()])
    }
    assert index.glob(pattern) == expected
