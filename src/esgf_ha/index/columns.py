"""The in-memory facet index: dictionary-encoded columns over one core's records.

Each record of a core lives at a fixed slot (its SQLite rowid), so a search is a few vector
operations over numpy arrays: a constraint is a lookup table gathered over a code column, a
facet count is one `bincount`. The durable copy is SQLite; these columns are rebuilt from it on
open and kept in step with every committed write (append a slot, or mark a slot dead). A record
that changes is written again at a new slot, so columns are append-only apart from `alive`.

Multi-valued fields keep their first value in `codes` and any further values as (slot, code)
pairs in an overflow list: most records have a single value, so the common path stays a flat
array.

A selective constraint is better answered from the other direction: which slots hold this
value. Each column builds those posting lists on first use (one sort of the column); because
slots are only ever appended, a built list stays true for the slots it covers, and slots added
since are found by scanning only the tail.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from esgf_ha.index import deadline
from esgf_ha.index.words import WordIndex, glob_regex, tokenize
from esgf_ha.records.schema import Kind, date_to_epoch, is_multi, kind_of

# Identifier-like fields with about one value per record: dictionary-encoding them would cost
# gigabytes at production scale, so they are answered by SQLite indexes instead (store.py).
KEYED_FIELDS = frozenset(
    {"id", "master_id", "instance_id", "dataset_id", "title", "tracking_id", "checksum"}
)
# Stored but not indexed in memory: long or unique values nobody facets on.
STORED_ONLY_FIELDS = frozenset(
    {
        "url",
        "xlink",
        "description",
        "geo",
        "pid",
        "citation_url",
        "further_info_url",
        "globus_url",
        "publish_path",
        "_version_",
        "score",
    }
)
# Up to this many wanted values, a whole-column match compares once per value (see match_codes).
FEW_CODES = 4


def _grow(arr: np.ndarray, size: int, fill: float | int) -> np.ndarray:
    if size <= len(arr):
        return arr
    cap = max(size, int(len(arr) * 1.5) + 1024)
    out = np.full(cap, fill, dtype=arr.dtype)
    out[: len(arr)] = arr
    return out


@dataclass
class EncodedStrings:
    """One string field of a batch, looked up in its column's dictionary without changing
    it: `firsts[i]` is the code of record i's (first) value, None where the value is new
    (`heads[i]` then says which); extra values of multi-valued fields come as (row, value)."""

    slots: np.ndarray
    firsts: list[int | None]
    heads: list[str]
    extra_rows: list[int]
    extra_values: list[str]


def encode_strings(
    lookup: dict[str, int], multi: bool, slots: np.ndarray, values: list[object]
) -> EncodedStrings:
    """The per-record work of adding string values, done before the write lock is taken
    (dictionary reads only, so searches and other readers are not disturbed)."""
    known: Callable[[str], int | None] = lookup.get
    xr: list[int] = []
    xv: list[str] = []
    if multi:
        # most records hold one value: look all first values up at once, then walk the
        # few with more
        heads = [str(v[0]) if type(v) is list else str(v) for v in values]
        for i, vals in enumerate(values):
            if type(vals) is list and len(vals) > 1:
                slot = int(slots[i])
                for v in list(dict.fromkeys(vals))[1:]:
                    xr.append(slot)
                    xv.append(str(v))
    else:
        heads = [v if type(v) is str else str(v) for v in values]
    return EncodedStrings(slots, list(map(known, heads)), heads, xr, xv)


class StrColumn:
    """A dictionary-encoded string field (single- or multi-valued)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.multi = is_multi(name)
        self.values: list[str] = []
        self.lookup: dict[str, int] = {}
        self.codes = np.full(0, -1, dtype=np.int32)
        self.xrows = np.zeros(0, dtype=np.int32)
        self.xcodes = np.zeros(0, dtype=np.int32)
        self.nx = 0
        self.totals = np.zeros(0, dtype=np.int64)  # live records per value
        self._words = WordIndex()
        self._lex: np.ndarray | None = None
        self._postings: _Postings | None = None
        self._postings_lock = threading.Lock()

    def code_for(self, value: str) -> int:
        code = self.lookup.get(value)
        if code is None:
            code = len(self.values)
            self.lookup[value] = code
            self.values.append(value)
            if code >= len(self.totals):
                self.totals = _grow(self.totals, code + 1, 0)
        return code

    def set_many(self, slots: np.ndarray, values: list[object]) -> None:
        """Set the values of many slots at once."""
        self.store(encode_strings(self.lookup, self.multi, slots, values))

    def store(self, enc: EncodedStrings) -> None:
        """Write values encoded by `encode_strings` (the caller holds the write lock); values
        new to this column get their codes here."""
        code_for = self.code_for
        firsts = enc.firsts
        if None in firsts:
            firsts = [
                c if c is not None else code_for(h) for c, h in zip(firsts, enc.heads, strict=True)
            ]
        slots = enc.slots
        top = int(slots.max()) + 1
        if top > len(self.codes):
            self.codes = _grow(self.codes, top, -1)
        codes = np.asarray(firsts, dtype=np.int32)
        self.codes[slots] = codes
        size = len(self.values)
        if size > len(self.totals):
            self.totals = _grow(self.totals, size, 0)
        self.totals[:size] += np.bincount(codes, minlength=size)
        if enc.extra_rows:
            extra_codes = np.asarray([code_for(v) for v in enc.extra_values], dtype=np.int32)
            need = self.nx + len(enc.extra_rows)
            self.xrows = _grow(self.xrows, need, 0)
            self.xcodes = _grow(self.xcodes, need, 0)
            self.xrows[self.nx : need] = enc.extra_rows
            self.xcodes[self.nx : need] = extra_codes
            self.nx = need
            size = len(self.values)
            if size > len(self.totals):
                self.totals = _grow(self.totals, size, 0)
            self.totals[:size] += np.bincount(extra_codes, minlength=size)

    def forget(self, slots: np.ndarray) -> None:
        """Take dead slots out of the live totals."""
        slots = slots[slots < len(self.codes)]
        codes = self.codes[slots]
        codes = codes[codes >= 0]
        np.subtract.at(self.totals, codes, 1)
        if self.nx:
            hit = np.isin(self.xrows[: self.nx], slots)
            np.subtract.at(self.totals, self.xcodes[: self.nx][hit], 1)

    # -- matching ---------------------------------------------------------------------------
    def _lut(self, codes: Sequence[int]) -> np.ndarray:
        """Whether each code is wanted, indexed by code; one spare entry at the end, so a
        missing value (-1) looks up False without shifting the whole column first."""
        lut = np.zeros(len(self.values) + 1, dtype=bool)
        lut[list(codes)] = True
        return lut

    def match_codes(self, codes: Iterable[int], n: int) -> np.ndarray:
        """Mask of slots [0, n) holding any of `codes`."""
        wanted = list(codes)
        if not wanted:
            return np.zeros(n, dtype=bool)
        col = self.codes[:n] if n <= len(self.codes) else _grow(self.codes, n, -1)[:n]
        lut = self._lut(wanted)
        if len(wanted) <= FEW_CODES:
            # a vectorised comparison per code reads the column once each, where a table
            # lookup gathers per slot: about 10x faster for one code over millions of slots
            mask = col == wanted[0]
            for code in wanted[1:]:
                mask |= col == code
        else:
            mask = np.take(lut, col)
        if self.nx:
            xr = self.xrows[: self.nx]
            hit = np.take(lut, self.xcodes[: self.nx]) & (xr < n)
            mask[xr[hit]] = True
        return mask

    def match_rows(self, codes: Iterable[int], rows: np.ndarray) -> np.ndarray:
        """For each of the given slots, whether it holds any of `codes`."""
        wanted = list(codes)
        if not wanted:
            return np.zeros(len(rows), dtype=bool)
        lut = self._lut(wanted)
        inside = rows < len(self.codes)
        if inside.all():
            hit = np.take(lut, self.codes[rows])
        else:
            hit = np.zeros(len(rows), dtype=bool)
            hit[inside] = np.take(lut, self.codes[rows[inside]])
        if self.nx:
            extra = self.xrows[: self.nx][np.take(lut, self.xcodes[: self.nx])]
            if len(extra):
                hit |= np.isin(rows, extra)
        return hit

    def rows_of(self, codes: Sequence[int], n: int) -> np.ndarray:
        """Sorted slots in [0, n) holding any of `codes` (dead slots included)."""
        codes = [c for c in codes if 0 <= c < len(self.values)]
        if not codes:
            return np.zeros(0, dtype=np.int64)
        post = self._postings_for(n)
        # values first seen after the lists were built have all their slots in the tail
        known = len(post.starts) - 1
        parts = [post.rows[post.starts[c] : post.starts[c + 1]] for c in codes if c < known]
        if post.upto < n:
            lut = self._lut(codes)
            tail = self.codes[post.upto : n]
            parts.append(np.flatnonzero(np.take(lut, tail)) + post.upto)
            xr = self.xrows[post.nx_upto : self.nx]
            parts.append(xr[np.take(lut, self.xcodes[post.nx_upto : self.nx]) & (xr < n)])
        parts = [p for p in parts if len(p)]
        if not parts:
            return np.zeros(0, dtype=np.int64)
        rows = np.concatenate(parts).astype(np.int64, copy=False)
        rows = rows[rows < n]
        # one code's list is sorted and holds a slot once; several may overlap
        return np.unique(rows) if len(parts) > 1 else rows

    def _postings_for(self, n: int) -> _Postings:
        post = self._postings
        if post is not None and n - post.upto <= max(1 << 16, post.upto // 8):
            return post
        with self._postings_lock:
            post = self._postings
            if post is None or n - post.upto > max(1 << 16, post.upto // 8):
                post = self._postings = _Postings.build(self, n)
            return post

    def exact(self, values: Iterable[str], n: int) -> np.ndarray:
        return self.match_codes([c for v in values if (c := self.lookup.get(v)) is not None], n)

    def present(self, n: int) -> np.ndarray:
        col = self.codes[:n] if n <= len(self.codes) else _grow(self.codes, n, -1)[:n]
        return col >= 0

    def codes_where(self, predicate: Callable[[str], bool]) -> list[int]:
        out = []
        for code, value in enumerate(self.values):
            if code % 4096 == 0:
                deadline.check()  # the values can be many and long
            if predicate(value):
                out.append(code)
        return out

    def wildcard(self, pattern: str, n: int) -> np.ndarray:
        rx = glob_regex(pattern, multiline=False)
        return self.match_codes(self.codes_where(lambda v: rx.match(v) is not None), n)

    def text_codes(self, words: Sequence[str], wildcard: bool) -> list[int]:
        """Codes of values containing the given word (or word sequence, for a phrase)."""
        self._words.update(self.values)
        if len(words) == 1:
            if wildcard:
                return sorted(self._words.glob(words[0]))
            return list(self._words.codes(words[0]))
        candidates = set(self._words.codes(words[0]))
        for word in words[1:]:
            candidates &= set(self._words.codes(word))
        return [c for c in candidates if _contains_run(tokenize(self.values[c]), words)]

    # -- counting ---------------------------------------------------------------------------
    def count(self, rows: np.ndarray, rows_mask: np.ndarray | None, n: int) -> np.ndarray:
        """Records per value among `rows` (slots; `rows_mask` is the same set as a mask)."""
        size = len(self.values)
        col = self.codes[:n] if n <= len(self.codes) else _grow(self.codes, n, -1)[:n]
        picked = np.take(col, rows)
        picked += 1  # in place: missing values (-1) land in bin 0
        counts = np.bincount(picked, minlength=size + 1)[1:]
        if self.nx:
            xr = self.xrows[: self.nx]
            hit = rows_mask[xr] if rows_mask is not None else np.isin(xr, rows)
            counts += np.bincount(self.xcodes[: self.nx][hit], minlength=size)
        return counts

    def lex_order(self) -> np.ndarray:
        """Codes in lexical order of their values (facets are listed that way)."""
        cached = self._lex
        if cached is None or len(cached) != len(self.values):
            values = self.values
            cached = self._lex = np.asarray(
                sorted(range(len(values)), key=values.__getitem__), dtype=np.int64
            )
        return cached

    def count_live(self) -> np.ndarray:
        return self.totals[: len(self.values)]


class _Postings:
    """Slots grouped by value code over slots [0, upto): code c owns rows[starts[c]:starts[c+1]],
    ascending (first values and overflow values of multi-valued fields alike)."""

    def __init__(self, rows: np.ndarray, starts: np.ndarray, upto: int, nx_upto: int) -> None:
        self.rows = rows
        self.starts = starts
        self.upto = upto
        self.nx_upto = nx_upto

    @classmethod
    def build(cls, col: StrColumn, n: int) -> _Postings:
        upto = n  # slots past the end of `codes` hold no value
        codes = col.codes[:n]
        slots = np.flatnonzero(codes >= 0)
        keys = (codes[slots].astype(np.int64) << 32) | slots
        nx = col.nx
        if nx:
            xr = col.xrows[:nx]
            inside = xr < upto
            extra = (col.xcodes[:nx][inside].astype(np.int64) << 32) | xr[inside]
            keys = np.concatenate([keys, extra])
        keys.sort()
        starts = np.searchsorted(keys >> 32, np.arange(len(col.values) + 1))
        rows = (keys & 0xFFFFFFFF).astype(np.int32)
        return cls(rows, starts, upto, nx)


def _contains_run(tokens: list[str], words: Sequence[str]) -> bool:
    k = len(words)
    return any(tokens[i : i + k] == list(words) for i in range(len(tokens) - k + 1))


class NumColumn:
    """A numeric, boolean or date field as float64 (dates as epoch seconds); NaN = absent."""

    def __init__(self, name: str, kind: Kind) -> None:
        self.name = name
        self.kind = kind
        self.data = np.full(0, np.nan, dtype=np.float64)

    def set_many(self, slots: np.ndarray, values: list[object]) -> None:
        self.store(slots, to_numbers(self.kind, values))

    def store(self, slots: np.ndarray, numbers: np.ndarray) -> None:
        top = int(slots.max()) + 1
        if top > len(self.data):
            self.data = _grow(self.data, top, np.nan)
        self.data[slots] = numbers

    def view(self, n: int) -> np.ndarray:
        return self.data[:n] if n <= len(self.data) else _grow(self.data, n, np.nan)[:n]


def to_numbers(kind: Kind, values: list[object]) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        try:
            out[i] = to_number(kind, value)
        except (TypeError, ValueError):
            out[i] = np.nan
    return out


def to_number(kind: Kind, value: object) -> float:
    if kind is Kind.BOOL:
        return 1.0 if value else 0.0
    if kind is Kind.DATE:
        return date_to_epoch(str(value))
    return float(value)  # type: ignore[arg-type]


@dataclass
class PendingAdd:
    """Records of one batch turned into column values, waiting for `CoreIndex.apply_add`."""

    slots: np.ndarray
    names: set[str] = field(default_factory=set)
    strings: dict[str, EncodedStrings] = field(default_factory=dict)
    numbers: dict[str, tuple[Kind, np.ndarray, np.ndarray]] = field(default_factory=dict)


class CoreIndex:
    """All in-memory columns of one core (Dataset, File or Aggregation)."""

    def __init__(self, core: str) -> None:
        self.core = core
        self.n = 0  # slots in use: 0..n-1 (dead ones included)
        self.alive = np.zeros(0, dtype=bool)
        self.live_count = 0
        self.strings: dict[str, StrColumn] = {}
        self.numbers: dict[str, NumColumn] = {}
        self.field_names: set[str] = set()
        self.generation = 0

    def add(self, slot: int, record: dict[str, object]) -> None:
        self.add_many([slot], [record])

    def add_many(self, slots: Sequence[int], records: Sequence[dict[str, object]]) -> None:
        """Add many records at once (see `prepare_add` and `apply_add`)."""
        self.apply_add(self.prepare_add(slots, records))

    def prepare_add(self, slots: Sequence[int], records: Sequence[dict[str, object]]) -> PendingAdd:
        """The per-record work of adding records, which changes nothing: it may run while
        searches read this index, so a writer holds the write lock only for `apply_add`."""
        pending = PendingAdd(np.asarray(slots, dtype=np.int64))
        if not len(slots):
            return pending
        slot_arr = pending.slots
        pending.names = set().union(*map(dict.keys, records))
        for name in pending.names:
            if name in KEYED_FIELDS or name in STORED_ONLY_FIELDS:
                continue
            kind = kind_of(name)
            if kind is Kind.TEXT:
                continue
            # one column at a time: a comprehension per field beats regrouping every record
            values: list[object] = [r.get(name) for r in records]
            field_slots = slot_arr
            if None in values or (kind is Kind.STRING and [] in values):
                keep = [i for i, v in enumerate(values) if v is not None and v != []]
                field_slots = slot_arr[keep]
                values = [values[i] for i in keep]
            if not values:
                continue
            if kind is Kind.STRING:
                col = self.strings.get(name)
                lookup = col.lookup if col is not None else {}
                enc = encode_strings(lookup, is_multi(name), field_slots, values)
                pending.strings[name] = enc
            else:
                pending.numbers[name] = (kind, field_slots, to_numbers(kind, values))
        return pending

    def apply_add(self, pending: PendingAdd) -> None:
        """Write prepared records into the columns (the caller holds the write lock)."""
        slot_arr = pending.slots
        if not len(slot_arr):
            return
        top = int(slot_arr.max()) + 1
        self.alive = _grow(self.alive, top, False)
        self.alive[slot_arr] = True
        self.live_count += len(slot_arr)
        self.n = max(self.n, top)
        self.field_names |= pending.names
        for name, enc in pending.strings.items():
            col = self.strings.get(name)
            if col is None:
                col = self.strings[name] = StrColumn(name)
            col.store(enc)
        for name, (kind, field_slots, numbers) in pending.numbers.items():
            num = self.numbers.get(name)
            if num is None:
                num = self.numbers[name] = NumColumn(name, kind)
            num.store(field_slots, numbers)
        self.generation += 1

    def remove(self, slots: Sequence[int]) -> None:
        arr = np.asarray([s for s in slots if s < self.n and self.alive[s]], dtype=np.int64)
        if not len(arr):
            return
        self.alive[arr] = False
        self.live_count -= len(arr)
        for col in self.strings.values():
            col.forget(arr)
        self.generation += 1

    def alive_mask(self) -> np.ndarray:
        return self.alive[: self.n].copy()
