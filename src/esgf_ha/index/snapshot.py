"""Save and load the in-memory facet index, so a large store reopens in seconds.

Rebuilding the columns means reading and decoding every record from SQLite, which takes
minutes at production scale. On clean shutdown (and after a bulk load) the columns are written
next to the store with the change-log sequence and the highest slot of each core they reflect;
on open they are used only if both still match the store, otherwise the index is rebuilt from
SQLite, which is always correct.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import orjson

from esgf_ha.index.columns import CoreIndex, NumColumn, StrColumn
from esgf_ha.records.schema import Kind

log = logging.getLogger("esgf_ha.index.snapshot")
FORMAT = 1


def save(directory: Path, cores: dict[str, CoreIndex], seq: int, max_slots: dict[str, int]) -> None:
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta: dict[str, object] = {"format": FORMAT, "seq": seq, "max_slots": max_slots, "cores": {}}
    for name, core in cores.items():
        arrays: dict[str, np.ndarray] = {"alive": core.alive[: core.n]}
        strings = {}
        for i, (field, col) in enumerate(core.strings.items()):
            arrays[f"s{i}_codes"] = (
                col.codes[: core.n]
                if len(col.codes) >= core.n
                else np.pad(col.codes, (0, core.n - len(col.codes)), constant_values=-1)
            )
            arrays[f"s{i}_xrows"] = col.xrows[: col.nx]
            arrays[f"s{i}_xcodes"] = col.xcodes[: col.nx]
            strings[field] = {"key": f"s{i}", "values": col.values}
        numbers = {}
        for i, (field, num) in enumerate(core.numbers.items()):
            arrays[f"n{i}"] = num.view(core.n)
            numbers[field] = {"key": f"n{i}", "kind": num.kind.value}
        np.savez(tmp / f"{name}.npz", **arrays)  # type: ignore[arg-type]
        meta["cores"][name] = {  # type: ignore[index]
            "n": core.n,
            "live_count": core.live_count,
            "field_names": sorted(core.field_names),
            "strings": strings,
            "numbers": numbers,
        }
    (tmp / "meta.json").write_bytes(orjson.dumps(meta))
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)


def load(directory: Path, seq: int, max_slots: dict[str, int]) -> dict[str, CoreIndex] | None:
    """The saved columns if they reflect exactly this store, else None."""
    meta_path = directory / "meta.json"
    if not meta_path.exists():
        return None
    try:
        meta = orjson.loads(meta_path.read_bytes())
        if (
            meta.get("format") != FORMAT
            or meta.get("seq") != seq
            or meta.get("max_slots") != max_slots
        ):
            log.info("facet snapshot is stale; rebuilding from the store")
            return None
        cores = {}
        for name, info in meta["cores"].items():
            arrays = np.load(directory / f"{name}.npz")
            core = CoreIndex(name)
            core.n = info["n"]
            core.alive = arrays["alive"].copy()
            core.live_count = info["live_count"]
            core.field_names = set(info["field_names"])
            alive = core.alive
            for field, s in info["strings"].items():
                col = StrColumn(field)
                col.values = list(s["values"])
                col.lookup = {v: i for i, v in enumerate(col.values)}
                col.codes = arrays[f"{s['key']}_codes"].copy()
                col.xrows = arrays[f"{s['key']}_xrows"].copy()
                col.xcodes = arrays[f"{s['key']}_xcodes"].copy()
                col.nx = len(col.xrows)
                size = len(col.values)
                live_codes = col.codes[alive[: len(col.codes)]]
                totals = np.bincount(live_codes[live_codes >= 0], minlength=size).astype(np.int64)
                if col.nx:
                    totals += np.bincount(col.xcodes[alive[col.xrows]], minlength=size)
                col.totals = totals
                core.strings[field] = col
            for field, nspec in info["numbers"].items():
                num = NumColumn(field, Kind(nspec["kind"]))
                num.data = arrays[nspec["key"]].copy()
                core.numbers[field] = num
            cores[name] = core
        return cores
    except (OSError, ValueError, KeyError) as exc:
        log.warning("facet snapshot unreadable (%s); rebuilding from the store", exc)
        return None
