"""The search engine: evaluate a SearchRequest over the facet index and the store.

Constraints become boolean masks over a core's slots; identifier constraints are answered by
SQLite indexes; facet counts are `bincount`s of the code columns under the final mask. When a
search selects most of the core (MetaGrid's default `project=CMIP6&latest=true` selects ~90% of
production), counts are taken as live totals minus the counts of the few unselected records.
"""

from __future__ import annotations

import heapq
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from esgf_ha.index import deadline
from esgf_ha.index import query as lucene
from esgf_ha.index.columns import (
    KEYED_FIELDS,
    STORED_ONLY_FIELDS,
    CoreIndex,
    to_number,
    tokenize,
)
from esgf_ha.index.errors import BadRequest
from esgf_ha.index.facet_counts import EMPTY, FacetCounts
from esgf_ha.index.facets import FacetProfile
from esgf_ha.index.params import SearchRequest, resolve_date
from esgf_ha.index.store import Store
from esgf_ha.records.schema import NOT_FACETS, Kind, kind_of, parse_bool

SMALL_RESULT = 5_000


@dataclass
class SearchResult:
    total: int
    slots: list[int]
    facets: dict[str, FacetCounts]
    facet_names: list[str]


class Engine:
    def __init__(
        self, store: Store, cores: dict[str, CoreIndex], profile: FacetProfile | None = None
    ) -> None:
        self.store = store
        self.cores = cores
        self.profile = profile if profile is not None else FacetProfile.builtin()
        self._id_order: dict[str, tuple[np.ndarray, int]] = {}
        self._cache = _FilterCache()
        self._text_slots = _TextSlots()
        self._flag_masks: dict[tuple[str, str, bool], tuple[int, np.ndarray]] = {}

    # -- entry point --------------------------------------------------------------------------
    def search(self, req: SearchRequest) -> SearchResult:
        core = self.cores[req.type]
        key = _filter_key(req)
        cached = self._cache.get(key, core.generation)
        if cached is None:
            cached = self._filter(req, core)
            self._cache.put(key, core.generation, cached)
        mask, rows, total = cached.mask, cached.rows, cached.total
        names = self._facet_names(req)
        facets = {}
        if names:
            missing = [n for n in names if n not in cached.facets]
            if missing:
                selection = _Selection.of(core, mask, rows, total)
                for name in missing:
                    deadline.check()
                    cached.facets[name] = self._count(core, name, mask, rows, total, selection)
            facets = {name: cached.facets[name] for name in names}
        slots = self._page(req, core, mask, rows, total) if req.limit else []
        return SearchResult(total, slots, facets, names)

    def _facet_names(self, req: SearchRequest) -> list[str]:
        if not req.facets:
            return []
        names: list[str] = []
        for name in req.facets:
            if name == "*" and self.profile.star_lists_fields:
                fields = self.cores["Dataset"].field_names
                names.extend(sorted(n for n in fields if n not in NOT_FACETS))
            elif name == "*":
                # the configured list, narrowed to the projects a search asks for
                names.extend(self.profile.for_projects(req.constraints.get("project", [])))
            else:
                names.append(name)
        return list(dict.fromkeys(names))

    # -- filters ------------------------------------------------------------------------------
    def _checks(self, req: SearchRequest, core: CoreIndex) -> list[_Check]:
        checks = [self._flag_check(core, name, flag) for name, flag in req.flags.items()]
        checks += [self._in_check(core, k, v, False) for k, v in req.constraints.items()]
        checks += [self._in_check(core, k, v, True) for k, v in req.negations.items()]
        checks.sort(key=lambda c: c.estimate)
        return checks

    def _filter(self, req: SearchRequest, core: CoreIndex) -> _Filtered:
        """The records a request selects. Keyword constraints are checked most selective
        first (estimated from the live totals of the wanted values). When the most selective
        one matches few records, its slots come straight from the posting lists (or SQLite,
        for identifiers) and every other constraint is checked on those slots only;
        otherwise each constraint is a pass over the whole core."""
        checks = self._checks(req, core)
        first = checks[0] if checks else None
        if first is not None and first.rows is not None and first.estimate <= _sparse_limit(core):
            rows = first.rows()
            rows = rows[core.alive[rows]]
            for check in checks[1:]:
                rows = rows[check.sparse(rows)]
            if not _needs_mask(req):
                return _Filtered(None, rows, len(rows), {})
            mask = self._slots_to_mask(core, rows)
        else:
            mask = core.alive_mask()
            self._apply_checks(checks, core, mask)
        self._apply_rest(req, core, mask)
        return _Filtered(mask, None, int(mask.sum()), {})

    def _apply_checks(self, checks: list[_Check], core: CoreIndex, mask: np.ndarray) -> None:
        n = core.n
        # once few slots remain, the rest are checked on those slots only
        rows: np.ndarray | None = None
        for i, check in enumerate(checks):
            deadline.check()
            if rows is None:
                mask &= check.dense(n)
                if i + 1 < len(checks) and np.count_nonzero(mask) * 16 < n:
                    rows = np.flatnonzero(mask)
            else:
                rows = rows[check.sparse(rows)]
        if rows is not None:
            mask[:] = False
            mask[rows] = True

    def _apply_rest(self, req: SearchRequest, core: CoreIndex, mask: np.ndarray) -> None:
        """The query and the range parameters, which are always whole-core masks."""
        if not isinstance(req.query, lucene.MatchAll):
            mask &= self.evaluate(core, req.query)
        if req.from_ or req.to:
            mask &= self.range(core, "_timestamp", req.from_, req.to, True, True)
        if req.start:
            mask &= self.range(core, "datetime_stop", req.start, None, True, True)
        if req.end:
            mask &= self.range(core, "datetime_start", None, req.end, True, True)
        if req.min_version or req.max_version:
            mask &= self.range(core, "version", req.min_version, req.max_version, True, True)
        if req.bbox:
            west, south, east, north = req.bbox
            mask &= self.range(core, "east_degrees", str(west), None, True, True)
            mask &= self.range(core, "north_degrees", str(south), None, True, True)
            mask &= self.range(core, "west_degrees", None, str(east), True, True)
            mask &= self.range(core, "south_degrees", None, str(north), True, True)

    def _flag_check(self, core: CoreIndex, name: str, flag: bool) -> _Check:
        col = core.numbers.get(name)
        if col is None:
            return _Check(0, lambda n: np.zeros(n, dtype=bool), lambda r: np.zeros(len(r), bool))
        return _Check(
            core.live_count // 2,
            lambda n: self._flag_mask(core, name, flag),  # n is core.n, as for every check
            lambda rows: self._flag_rows(core, name, flag, rows),
        )

    def _flag_mask(self, core: CoreIndex, name: str, flag: bool) -> np.ndarray:
        """The whole-core mask of a flag (`latest`, `replica`, ...), kept until the core
        changes: nearly every search asks for `latest=true`, and comparing a float column over
        millions of slots took longer than the rest of a selective search."""
        kept = self._kept_flag(core, name, flag)
        if kept is None:
            kept = core.numbers[name].view(core.n) == float(flag)
            kept.setflags(write=False)  # shared by every search that follows
            self._flag_masks[(core.core, name, flag)] = (core.generation, kept)
        return kept

    def _flag_rows(self, core: CoreIndex, name: str, flag: bool, rows: np.ndarray) -> np.ndarray:
        kept = self._kept_flag(core, name, flag)
        if kept is not None:  # a byte per slot to gather instead of a float
            return kept[rows]
        return core.numbers[name].view(core.n)[rows] == float(flag)

    def _kept_flag(self, core: CoreIndex, name: str, flag: bool) -> np.ndarray | None:
        hit = self._flag_masks.get((core.core, name, flag))
        if hit is None or hit[0] != core.generation or len(hit[1]) != core.n:
            return None
        return hit[1]

    def _in_check(self, core: CoreIndex, name: str, values: list[str], negate: bool) -> _Check:
        n = core.n
        col = core.strings.get(name)
        if col is not None and name not in KEYED_FIELDS and name not in STORED_ONLY_FIELDS:
            codes = [c for v in values if (c := col.lookup.get(v)) is not None]
            hits = int(col.count_live()[codes].sum()) if codes else 0
            if negate:
                return _Check(
                    core.live_count - hits,
                    lambda n: ~col.match_codes(codes, n),
                    lambda rows: ~col.match_rows(codes, rows),
                )
            return _Check(
                hits,
                lambda n: col.match_codes(codes, n),
                lambda rows: col.match_rows(codes, rows),
                lambda: col.rows_of(codes, core.n),
            )
        if name in KEYED_FIELDS:
            slots = self.store.slots_equal(core.core, name, values)
            slots = slots[slots < n]
            if negate:
                return _Check(
                    core.live_count - len(slots),
                    lambda n: ~self._slots_to_mask(core, slots),
                    lambda rows: ~np.isin(rows, slots),
                )
            return _Check(
                len(slots),
                lambda n: self._slots_to_mask(core, slots),
                lambda rows: np.isin(rows, slots),
                lambda: np.unique(slots),
            )
        dense = self.field_in(core, name, values)
        if negate:
            dense = ~dense
        return _Check(core.live_count, lambda n: dense, lambda rows: dense[rows])

    def _bool_field(self, core: CoreIndex, name: str, flag: bool) -> np.ndarray:
        col = core.numbers.get(name)
        if col is None:
            return np.zeros(core.n, dtype=bool)
        return col.view(core.n) == (1.0 if flag else 0.0)

    def _slots_to_mask(self, core: CoreIndex, slots: np.ndarray) -> np.ndarray:
        mask = np.zeros(core.n, dtype=bool)
        slots = slots[slots < core.n]
        mask[slots] = True
        return mask

    def field_in(self, core: CoreIndex, name: str, values: list[str]) -> np.ndarray:
        """Records whose field equals any of the values (exact and case-sensitive)."""
        n = core.n
        if name in KEYED_FIELDS:
            return self._slots_to_mask(core, self.store.slots_equal(core.core, name, values))
        if name in STORED_ONLY_FIELDS:
            return self._slots_to_mask(core, self.store.slots_containing(core.core, name, values))
        col = core.strings.get(name)
        if col is not None:
            return col.exact(values, n)
        num = core.numbers.get(name)
        if num is not None:
            wanted = []
            for v in values:
                try:
                    wanted.append(self._number(num.kind, v, name))
                except BadRequest:
                    continue
            return np.isin(num.view(n), np.asarray(wanted, dtype=np.float64))
        return np.zeros(n, dtype=bool)

    def _number(self, kind: Kind, value: str, name: str) -> float:
        try:
            if kind is Kind.BOOL:
                return 1.0 if parse_bool(value) else 0.0
            if kind is Kind.DATE:
                return to_number(kind, resolve_date(value))
            return float(value)
        except (ValueError, TypeError, OverflowError):
            raise BadRequest(f"Invalid value for field {name}: {value!r}") from None

    def range(
        self,
        core: CoreIndex,
        name: str,
        low: str | None,
        high: str | None,
        inc_low: bool,
        inc_high: bool,
    ) -> np.ndarray:
        n = core.n
        if name in KEYED_FIELDS:
            return self._slots_to_mask(
                core, self.store.slots_range(core.core, name, low, high, inc_low, inc_high)
            )
        col = core.strings.get(name)
        if col is not None:

            def inside(v: str) -> bool:
                if low is not None and (v < low or (v == low and not inc_low)):
                    return False
                return not (high is not None and (v > high or (v == high and not inc_high)))

            return col.match_codes(col.codes_where(inside), n)
        num = core.numbers.get(name)
        if num is None:
            return np.zeros(n, dtype=bool)
        data = num.view(n)
        mask = ~np.isnan(data)
        if low is not None:
            lo = self._number(num.kind, low, name)
            mask &= (data >= lo) if inc_low else (data > lo)
        if high is not None:
            hi = self._number(num.kind, high, name)
            mask &= (data <= hi) if inc_high else (data < hi)
        return mask

    # -- the Lucene query ---------------------------------------------------------------------
    def evaluate(self, core: CoreIndex, node: lucene.Node) -> np.ndarray:
        deadline.check()
        n = core.n
        if isinstance(node, lucene.MatchAll):
            return np.ones(n, dtype=bool)
        if isinstance(node, lucene.Bool):
            if node.must:
                mask = np.ones(n, dtype=bool)
                for child in node.must:
                    mask &= self.evaluate(core, child)
            elif node.should:
                mask = np.zeros(n, dtype=bool)
                for child in node.should:
                    mask |= self.evaluate(core, child)
            else:
                mask = np.ones(n, dtype=bool)
            for child in node.must_not:
                mask &= ~self.evaluate(core, child)
            return mask
        if isinstance(node, lucene.Range):
            if node.field is None or node.field == "text":
                return np.zeros(n, dtype=bool)
            return self.range(
                core, node.field, node.low, node.high, node.include_low, node.include_high
            )
        assert isinstance(node, lucene.Term)
        if node.field is None or node.field == "text":
            return self.text(core, node)
        name = node.field
        if node.wildcard:
            return self._wildcard(core, name, node.value)
        return self.field_in(core, name, [node.value])

    def _wildcard(self, core: CoreIndex, name: str, pattern: str) -> np.ndarray:
        if name in KEYED_FIELDS:
            glob = re.sub(r"([\[\]])", r"[\1]", pattern)
            return self._slots_to_mask(core, self.store.slots_glob(core.core, name, glob))
        col = core.strings.get(name)
        if col is not None:
            return col.wildcard(pattern, core.n)
        if pattern.strip("*") == "" and name in core.numbers:
            return ~np.isnan(core.numbers[name].view(core.n))
        return np.zeros(core.n, dtype=bool)

    def text(self, core: CoreIndex, node: lucene.Term) -> np.ndarray:
        """Free text: case-insensitive words of any indexed value, title, description or id."""
        n = core.n
        mask = np.zeros(n, dtype=bool)
        if node.wildcard:
            words = [node.value.lower()]
        else:
            words = tokenize(node.value)
            if not words:
                return mask
        limit = _sparse_limit(core)
        for col in core.strings.values():
            deadline.check()
            codes = col.text_codes(words, node.wildcard)
            if not codes:
                continue
            if int(col.count_live()[codes].sum()) <= limit:
                mask[col.rows_of(codes, n)] = True
            else:
                mask |= col.match_codes(codes, n)
        fts = _fts_query(words, node.wildcard)
        if fts:
            mask[self._text_slots.get(self.store, core, fts)] = True
        return mask

    # -- facets -------------------------------------------------------------------------------
    def _count(
        self,
        core: CoreIndex,
        name: str,
        mask: np.ndarray | None,
        rows: np.ndarray | None,
        total: int,
        sel: _Selection,
    ) -> FacetCounts:
        col = core.strings.get(name)
        if col is not None:
            counts = col.count(sel.rows, sel.rows_mask, core.n)
            if sel.complement:
                counts = col.count_live() - counts
            order = col.lex_order()
            ordered = counts[order]
            keep = ordered > 0
            return FacetCounts(col.values, ordered[keep], order[keep])
        num = core.numbers.get(name)
        if num is not None:
            data = num.view(core.n)[_selected(sel, mask)]
            data = data[~np.isnan(data)]
            uniques, counts = np.unique(data, return_counts=True)
            pairs = [
                (_render_number(num.kind, v), int(c)) for v, c in zip(uniques, counts, strict=True)
            ]
            pairs.sort(key=lambda p: p[0])
            return FacetCounts.of_pairs(pairs)
        if name in KEYED_FIELDS and total <= 100_000:
            docs = self.store.fetch(core.core, _selected(sel, mask).tolist())
            tally: dict[str, int] = {}
            for doc in docs.values():
                value = doc.get(name)
                for v in value if isinstance(value, list) else [value]:
                    if v is not None:
                        tally[str(v)] = tally.get(str(v), 0) + 1
            return FacetCounts.of_pairs(sorted(tally.items()))
        return EMPTY

    # -- order and page -----------------------------------------------------------------------
    def _page(
        self,
        req: SearchRequest,
        core: CoreIndex,
        mask: np.ndarray | None,
        rows: np.ndarray | None,
        total: int,
    ) -> list[int]:
        start, stop = req.offset, req.offset + req.limit
        if start >= total:
            return []
        if mask is None:
            assert rows is not None
            if req.sort or (req.type == "File" and total > SMALL_RESULT):
                mask = self._slots_to_mask(core, rows)
            elif req.type == "File":
                return self.store.order_by_id(core.core, rows.tolist())[start:stop]
            else:
                return [int(s) for s in rows[start:stop]]
        if req.sort:
            slots = np.flatnonzero(mask)
            ts = core.numbers.get("_timestamp")
            keys = ts.view(core.n)[slots] if ts is not None else slots.astype(np.float64)
            order = np.lexsort((slots, -np.nan_to_num(keys, nan=-np.inf)))
            return [int(s) for s in slots[order][start:stop]]
        if req.type == "File":
            return self._page_by_id(core, mask, total, start, stop)
        return [int(s) for s in _first_true(mask, stop)[start:stop]]

    def _page_by_id(
        self, core: CoreIndex, mask: np.ndarray, total: int, start: int, stop: int
    ) -> list[int]:
        """Files are served in `id` order, as esg-search does, so paging is stable."""
        if total <= SMALL_RESULT:
            ordered = self.store.order_by_id(core.core, np.flatnonzero(mask).tolist())
            return ordered[start:stop]
        perm, upto = self._id_order.get(core.core, (np.zeros(0, dtype=np.int64), 0))
        tail = np.flatnonzero(mask[upto:]) + upto
        if len(tail) > max(SMALL_RESULT, total // 20) or upto == 0:
            perm = self.store.all_slots_by_id(core.core)
            upto = int(perm.max()) + 1 if len(perm) else 0
            self._id_order[core.core] = (perm, upto)
            tail = np.flatnonzero(mask[upto:]) + upto
        inside = perm[perm < core.n]
        main = inside[mask[inside]][:stop]
        if not len(tail):
            return [int(s) for s in main[start:stop]]
        ids = self.store.ids_of(core.core, main.tolist() + tail.tolist())
        merged = heapq.merge(
            main.tolist(), sorted(tail.tolist(), key=lambda s: ids[s]), key=lambda s: ids[s]
        )
        out = []
        for i, slot in enumerate(merged):
            if i >= stop:
                break
            if i >= start:
                out.append(slot)
        return out


def _sparse_limit(core: CoreIndex) -> int:
    """Below this many matches, checking constraints slot by slot beats whole-core passes."""
    return max(SMALL_RESULT, core.n // 8)


def _needs_mask(req: SearchRequest) -> bool:
    """Whether the request filters by more than keyword constraints (whole-core masks)."""
    return bool(
        not isinstance(req.query, lucene.MatchAll)
        or req.from_
        or req.to
        or req.start
        or req.end
        or req.bbox
        or req.min_version
        or req.max_version
    )


@dataclass
class _Check:
    """One keyword constraint: its estimated hits, and how to test it over the whole core
    (a mask over slots [0, n)) or over given slots only."""

    estimate: int
    dense: Callable[[int], np.ndarray]
    sparse: Callable[[np.ndarray], np.ndarray]
    rows: Callable[[], np.ndarray] | None = None  # the matching slots, sorted, when cheap


@dataclass
class _Filtered:
    mask: np.ndarray | None  # the matches as a mask over slots, or
    rows: np.ndarray | None  # as sorted slots, when there are few
    total: int
    facets: dict[str, FacetCounts]


class _FilterCache:
    """Recent filter results (mask, count, facet counts) by the request's constraints.

    The same filters come back often (MetaGrid opens on one default search for everybody),
    so their mask and facet counts are kept until the core changes. Entries are tied to the
    core's generation, which every write bumps."""

    def __init__(self, entries: int = 32) -> None:
        self.entries = entries
        self._data: OrderedDict[tuple, tuple[int, _Filtered]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, generation: int) -> _Filtered | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None or hit[0] != generation:
                return None
            self._data.move_to_end(key)
            return hit[1]

    def put(self, key: tuple, generation: int, value: _Filtered) -> None:
        with self._lock:
            self._data[key] = (generation, value)
            self._data.move_to_end(key)
            while len(self._data) > self.entries:
                self._data.popitem(last=False)


class _TextSlots:
    """Recent title/description matches per full-text query, as sorted slots.

    Popular words match a large part of the index, and reading their matches out of SQLite
    costs far more than the rest of a search. Slots are only ever appended, so a kept answer
    stays true for the slots it covered: it is topped up with the matches among slots added
    since, and dead slots are dropped later by the live mask. Bounded by entries and by the
    slots held."""

    def __init__(self, entries: int = 256, max_slots: int = 50_000_000) -> None:
        self.entries = entries
        self.max_slots = max_slots
        self._data: OrderedDict[tuple[str, str], tuple[int, np.ndarray]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def get(self, store: Store, core: CoreIndex, fts: str) -> np.ndarray:
        key = (core.core, fts)
        with self._lock:
            hit = self._data.get(key)
        upto, slots = hit if hit is not None else (0, np.zeros(0, dtype=np.int32))
        if upto >= core.n:
            with self._lock:
                if key in self._data:
                    self._data.move_to_end(key)
            return slots
        found = store.slots_text(core.core, fts, upto)
        found = found[found < core.n].astype(np.int32)
        slots = np.concatenate([slots, found]) if upto else found
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._held -= len(old[1])
            if len(slots) <= self.max_slots // 4:
                self._data[key] = (core.n, slots)
                self._held += len(slots)
            while self._data and (len(self._data) > self.entries or self._held > self.max_slots):
                _, (_, dropped) = self._data.popitem(last=False)
                self._held -= len(dropped)
        return slots


def _filter_key(req: SearchRequest) -> tuple:
    return (
        req.type,
        tuple(sorted((k, tuple(v)) for k, v in req.constraints.items())),
        tuple(sorted((k, tuple(v)) for k, v in req.negations.items())),
        tuple(sorted(req.flags.items())),
        req.query,
        req.from_,
        req.to,
        req.start,
        req.end,
        req.bbox,
        req.min_version,
        req.max_version,
    )


@dataclass
class _Selection:
    """The slots to count facets over, found once per search. When a search selects most of
    the core, counting the few unselected records and subtracting from the live totals
    touches far fewer slots."""

    rows: np.ndarray
    rows_mask: np.ndarray | None
    complement: bool

    @classmethod
    def of(
        cls, core: CoreIndex, mask: np.ndarray | None, rows: np.ndarray | None, total: int
    ) -> _Selection:
        if mask is None:
            assert rows is not None
            # multi-valued columns test their overflow entries against the selection as a mask
            rows_mask = None
            if any(col.nx for col in core.strings.values()):
                rows_mask = np.zeros(core.n, dtype=bool)
                rows_mask[rows] = True
            return cls(rows, rows_mask, False)
        if total * 2 > core.live_count:
            rest = core.alive[: core.n] & ~mask
            return cls(np.flatnonzero(rest), rest, True)
        return cls(np.flatnonzero(mask), mask, False)


def _selected(sel: _Selection, mask: np.ndarray | None) -> np.ndarray:
    """The selected slots (a complement selection holds the unselected ones)."""
    if not sel.complement:
        return sel.rows
    assert mask is not None
    return np.flatnonzero(mask)


def _first_true(mask: np.ndarray, k: int, chunk: int = 1 << 16) -> np.ndarray:
    """Positions of the first k True values, without scanning past them."""
    found: list[np.ndarray] = []
    have = 0
    for begin in range(0, len(mask), chunk):
        hits = np.flatnonzero(mask[begin : begin + chunk])
        if len(hits):
            found.append(hits + begin)
            have += len(hits)
            if have >= k:
                break
    if not found:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(found)[:k]


def _render_number(kind: Kind, value: float) -> str:
    if kind is Kind.BOOL:
        return "true" if value else "false"
    if kind in (Kind.INT, Kind.LONG):
        return str(int(value))
    if kind is Kind.DATE:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return repr(float(value))


def _fts_query(words: list[str], wildcard: bool) -> str | None:
    if wildcard:
        word = words[0]
        stem = word.rstrip("*")
        if stem and re.fullmatch(r"[0-9a-z]+", stem) and word.endswith("*"):
            return f'"{stem}"*'
        return None
    safe = [w for w in words if re.fullmatch(r"[0-9a-z]+", w)]
    if not safe:
        return None
    return '"' + " ".join(safe) + '"'


__all__ = ["Engine", "SearchResult", "resolve_date", "kind_of"]
