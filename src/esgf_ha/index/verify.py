"""Compare the content of two indexes (a replica and its master) by digests over id ranges.

Each side hashes (id, identifier columns, stored document) of every record in a range, in id
order (`POST /api/v1/digest`). Equal digests mean equal ranges; a differing range is cut into
parts at the master's ids and the parts compared again, down to ranges small enough to list
their ids and hashes. So two indexes of millions of records that differ in a few records are
compared with a few dozen requests, and every differing id is named.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from esgf_ha.common.index_client import IndexClient, IndexClientError

CORES = ("Dataset", "File", "Aggregation")
LIST_BELOW = 512
PARTS = 16


class VerifyError(Exception):
    """An index could not be asked for digests."""


@dataclass
class Difference:
    core: str
    record_id: str
    problem: str  # "missing on replica", "only on replica", "content differs"


@dataclass
class Report:
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # core: (master, replica)
    differences: list[Difference] = field(default_factory=list)
    requests: int = 0

    @property
    def identical(self) -> bool:
        return not self.differences


class _Side:
    def __init__(self, client: IndexClient, name: str, report: Report) -> None:
        self.client = client
        self.name = name
        self.report = report

    def ask(self, body: dict[str, object]) -> dict:
        self.report.requests += 1
        try:
            return dict(self.client.post_json("/api/v1/digest", body))
        except IndexClientError as exc:
            raise VerifyError(f"{self.name}: {exc}") from None

    def digests(self, core: str, ranges: list[list[object]]) -> list[dict]:
        return list(self.ask({"core": core, "ranges": ranges})["digests"])

    def split(self, core: str, low: str, high: str | None) -> list[str]:
        return list(self.ask({"core": core, "split": [low, high, PARTS]})["bounds"])


def compare(master: IndexClient, replica: IndexClient) -> Report:
    report = Report()
    left, right = _Side(master, "master", report), _Side(replica, "replica", report)
    for core in CORES:
        whole_m = left.digests(core, [["", None]])[0]
        whole_r = right.digests(core, [["", None]])[0]
        report.counts[core] = (whole_m["count"], whole_r["count"])
        if whole_m["sha256"] == whole_r["sha256"]:
            continue
        report.differences.extend(_bisect(left, right, core, "", None, whole_m, whole_r))
    return report


def _bisect(
    left: _Side, right: _Side, core: str, low: str, high: str | None, dm: dict, dr: dict
) -> Iterator[Difference]:
    if max(dm["count"], dr["count"]) <= LIST_BELOW:
        yield from _list_diff(left, right, core, low, high)
        return
    bounds = left.split(core, low, high) or right.split(core, low, high)
    edges: list[str | None] = [low, *bounds, high]
    ranges: list[list[object]] = [[edges[i], edges[i + 1]] for i in range(len(edges) - 1)]
    if len(ranges) == 1:  # cannot cut further: list it whole
        yield from _list_diff(left, right, core, low, high)
        return
    for rm, rr in zip(left.digests(core, ranges), right.digests(core, ranges), strict=True):
        if rm["sha256"] != rr["sha256"]:
            yield from _bisect(left, right, core, rm["lo"], rm["hi"], rm, rr)


def _list_diff(
    left: _Side, right: _Side, core: str, low: str, high: str | None
) -> Iterator[Difference]:
    ours = dict(map(tuple, left.digests(core, [[low, high, True]])[0]["ids"]))
    theirs = dict(map(tuple, right.digests(core, [[low, high, True]])[0]["ids"]))
    for record_id in sorted(ours.keys() | theirs.keys()):
        if record_id not in theirs:
            yield Difference(core, record_id, "missing on replica")
        elif record_id not in ours:
            yield Difference(core, record_id, "only on replica")
        elif ours[record_id] != theirs[record_id]:
            yield Difference(core, record_id, "content differs")
