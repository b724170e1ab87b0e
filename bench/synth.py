"""Deterministic synthetic CMIP6-like ESGF index.

Every facet value is drawn from the real production distribution captured in
``bench/data/esgf-production-facets-2025.json`` (MetaGrid's default request against the
production esg-search index, 2025), weighted by its count.  Facets are kept loosely consistent:

* ``source_id``, ``experiment_id``, ``table_id``, ``variable_id``, ``variant_label``,
  ``data_node``, ``nominal_resolution`` and ``grid_label`` are drawn independently;
* ``institution_id`` (from source_id), ``activity_id`` (first value, from experiment_id),
  ``source_type`` (first value, from source_id), ``frequency`` and ``realm`` (first value, from
  table_id) and ``cf_standard_name`` (from variable_id) come from fixed random mappings built so
  that the marginal distribution of the derived facet stays close to production;
* ``sub_experiment_id`` is ``sYYYY`` for decadal hindcast/forecast experiments, else ``none``;
* the three multi-valued facets (activity_id, source_type, realm) get 1-3 values so that their
  totals exceed the record count by the same ratio as in production.

About 84% of the records are "base" datasets, 11% older versions (``latest=False``) and 5%
replicas of a base dataset on another data node (``replica=True``).

All the randomness is drawn up front as numpy arrays (the *plan*); records are built lazily as
plain dicts by :meth:`SyntheticIndex.iter_datasets` / :meth:`SyntheticIndex.iter_files`, so the
larger tiers stream in constant memory and can be iterated several times with identical output.

Records share list objects for repeated values (e.g. every ``["CMIP6"]``); consumers must treat
records as read-only.

Run ``python bench/synth.py --scale 100k`` to time generation and print a summary.
"""

from __future__ import annotations

import argparse
import binascii
import json
import pathlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from esgf_ha.index.stac.vocabulary import PROJECT_FACETS

DATA_PATH = pathlib.Path(__file__).resolve().parent / "data" / "esgf-production-facets-2025.json"
DEFAULT_SEED = 20250101

#: MetaGrid's default facet list, in its order (the one the search page and STAC show).
FACETS: tuple[str, ...] = PROJECT_FACETS["CMIP6"]
MULTI_VALUED: tuple[str, ...] = ("activity_id", "source_type", "realm")
MAX_VALUES = 3  # at most this many values per multi-valued facet
#: Probability of drawing 1, 2 or 3 values per record (duplicates are dropped), tuned so the
#: total/numFound ratios match production: activity_id 1.023, source_type 1.641, realm 1.012.
N_VALUES_P: dict[str, tuple[float, float, float]] = {
    "activity_id": (0.972, 0.025, 0.003),
    "source_type": (0.27, 0.50, 0.23),
    "realm": (0.986, 0.013, 0.001),
}
#: Which facet each derived facet's (first) value comes from.
DERIVED_FROM: dict[str, str] = {
    "institution_id": "source_id",
    "activity_id": "experiment_id",
    "source_type": "source_id",
    "frequency": "table_id",
    "realm": "table_id",
    "cf_standard_name": "variable_id",
}
INDEPENDENT: tuple[str, ...] = (
    "source_id",
    "experiment_id",
    "table_id",
    "variable_id",
    "variant_label",
    "data_node",
    "nominal_resolution",
    "grid_label",
)
INDEX_NODES: tuple[str, ...] = (
    "esgf-node.llnl.gov",
    "esgf.ceda.ac.uk",
    "esgf-data.dkrz.de",
    "esgf-node.ipsl.upmc.fr",
    "esgf-node.ornl.gov",
    "esgf.nci.org.au",
)
DATA_ROOTS: tuple[str, ...] = ("css03_data", "esg_dataroot", "data", "esgf_data", "thredds_root")
DIRECTORY_FORMAT_TEMPLATE = (
    "%(root)s/%(mip_era)s/%(activity_drs)s/%(institution_id)s/%(source_id)s/%(experiment_id)s/"
    "%(member_id)s/%(table_id)s/%(variable_id)s/%(grid_label)s/%(version)s"
)
VERSION_EPOCH = np.datetime64("2018-01-01")
FRACTION_OLD = 0.11
FRACTION_REPLICA = 0.05
FILE_BLOCK = 4096  # datasets per block of file-level random draws


@dataclass(frozen=True)
class ScaleTier:
    name: str
    n_datasets: int
    n_files: int


SCALES: dict[str, ScaleTier] = {
    "tiny": ScaleTier("tiny", 2_000, 20_000),  # for tests of the bench itself
    "10k": ScaleTier("10k", 10_000, 100_000),
    "100k": ScaleTier("100k", 100_000, 1_000_000),
    "1m": ScaleTier("1m", 1_000_000, 10_000_000),
    "9m": ScaleTier("9m", 9_000_000, 10_000_000),
}


@dataclass(frozen=True)
class FacetDist:
    values: list[str]
    weights: np.ndarray  # float64, sums to 1

    def __len__(self) -> int:
        return len(self.values)


def load_distributions(path: pathlib.Path = DATA_PATH) -> tuple[int, dict[str, FacetDist]]:
    """Return production numFound and, per facet, its values with normalised count weights."""
    raw = json.loads(path.read_text())
    dists: dict[str, FacetDist] = {}
    for facet in FACETS:
        counts = raw["facet_counts"][facet]
        values = sorted(counts)
        w = np.array([counts[v] for v in values], dtype=np.float64)
        dists[facet] = FacetDist(values, w / w.sum())
    return int(raw["numFound"]), dists


def marginal_mapping(child: FacetDist, parent: FacetDist, rng: np.random.Generator) -> np.ndarray:
    """Map each child value to one parent value, keeping the parent marginal roughly intact.

    Children are placed heaviest first, each on a random parent (weighted by remaining capacity)
    among those whose remaining capacity still fits it, else on the parent with most capacity.
    """
    remaining = parent.weights.copy()
    out = np.empty(len(child), dtype=np.int32)
    for c in np.argsort(-child.weights, kind="stable"):
        w = child.weights[c]
        fits = remaining >= w
        if fits.any():
            cap = np.where(fits, remaining, 0.0)
            p = int(rng.choice(len(parent), p=cap / cap.sum()))
        else:
            p = int(np.argmax(remaining))
        out[c] = p
        remaining[p] -= w
    return out


def _draw(rng: np.random.Generator, dist: FacetDist, n: int) -> np.ndarray:
    return rng.choice(len(dist), size=n, p=dist.weights).astype(np.int32)


def _yyyymmdd(day_offsets: np.ndarray) -> np.ndarray:
    days = VERSION_EPOCH + day_offsets.astype("timedelta64[D]")
    return np.char.replace(days.astype("U10"), "-", "")


class SyntheticIndex:
    """The plan of a synthetic index plus lazy record builders.

    Dataset ``i`` (0 <= i < n_datasets) is the i-th record yielded by :meth:`iter_datasets`;
    its files are ``file_start[i] : file_start[i] + n_files_of[i]`` in :meth:`iter_files`.
    """

    def __init__(
        self,
        tier: ScaleTier | str = "100k",
        seed: int = DEFAULT_SEED,
        data_path: pathlib.Path = DATA_PATH,
    ) -> None:
        self.tier = SCALES[tier] if isinstance(tier, str) else tier
        self.seed = seed
        self.production_num_found, self.dists = load_distributions(data_path)
        rng = np.random.default_rng(seed)
        self._build_mappings(rng)
        self._build_plan(rng)
        self._build_lookup_tables()

    # ------------------------------------------------------------------ plan
    def _build_mappings(self, rng: np.random.Generator) -> None:
        d = self.dists
        self.mapping = {f: marginal_mapping(d[src], d[f], rng) for f, src in DERIVED_FROM.items()}
        exp_values = d["experiment_id"].values
        decadal = ("dcppA-hindcast", "dcppB-forecast", "dcppC-hindcast", "dcppC-forecast")
        self.exp_is_decadal = np.array([v.startswith(decadal) for v in exp_values], dtype=bool)
        sub = d["sub_experiment_id"]
        w = np.array(
            [0.0 if v == "none" else x for v, x in zip(sub.values, sub.weights, strict=True)]
        )
        self.sub_year_dist = FacetDist(sub.values, w / w.sum())
        self.sub_none = sub.values.index("none")
        n_nodes = len(d["data_node"])
        self.node_index_node = rng.integers(0, len(INDEX_NODES), size=n_nodes)
        self.node_root = rng.integers(0, len(DATA_ROOTS), size=n_nodes)

    def _build_plan(self, rng: np.random.Generator) -> None:
        n = self.tier.n_datasets
        n_old = int(round(n * FRACTION_OLD))
        n_rep = int(round(n * FRACTION_REPLICA))
        n_base = n - n_old - n_rep
        d = self.dists

        base = {f: _draw(rng, d[f], n_base) for f in INDEPENDENT}
        for f, src in DERIVED_FROM.items():
            base[f] = self.mapping[f][base[src]]
        sub = np.full(n_base, self.sub_none, dtype=np.int32)
        dec = self.exp_is_decadal[base["experiment_id"]]
        sub[dec] = _draw(rng, self.sub_year_dist, int(dec.sum()))
        base["sub_experiment_id"] = sub
        for f in MULTI_VALUED:  # extra values: -1 = absent
            k = rng.choice(3, size=n_base, p=N_VALUES_P[f]) + 1
            e1 = _draw(rng, d[f], n_base)
            e2 = _draw(rng, d[f], n_base)
            e1[(k < 2) | (e1 == base[f])] = -1
            e2[(k < 3) | (e2 == base[f]) | (e2 == e1)] = -1
            base[f + "#2"], base[f + "#3"] = e1, e2
        base["version"] = rng.integers(400, 2400, size=n_base).astype(np.int32)
        base["replica"] = np.zeros(n_base, dtype=bool)
        base["start_year"] = rng.choice(
            np.array([1850, 1950, 1979, 2015]), size=n_base, p=[0.4, 0.2, 0.1, 0.3]
        ).astype(np.int32)
        base["n_years"] = rng.choice(np.array([1, 10, 30, 86, 165, 250]), size=n_base).astype(
            np.int32
        )
        decadal_start = np.array(
            [int(v[1:]) + 1 if v != "none" else 0 for v in d["sub_experiment_id"].values],
            dtype=np.int32,
        )[sub]
        base["start_year"] = np.where(dec, decadal_start, base["start_year"])
        base["n_years"] = np.where(dec, 10, base["n_years"])

        # older versions and replicas copy a random base dataset
        old_parent = rng.integers(0, n_base, size=n_old)
        rep_parent = rng.integers(0, n_base, size=n_rep)
        parent = np.concatenate([np.arange(n_base), old_parent, rep_parent])
        cols = {name: arr[parent] for name, arr in base.items()}
        cols["version"][n_base : n_base + n_old] -= rng.integers(30, 390, size=n_old).astype(
            np.int32
        )
        rep_slice = slice(n_base + n_old, n)
        n_nodes = len(d["data_node"])
        new_node = _draw(rng, d["data_node"], n_rep)
        same = new_node == cols["data_node"][rep_slice]
        new_node[same] = (new_node[same] + 1) % n_nodes
        cols["data_node"][rep_slice] = new_node
        cols["replica"][rep_slice] = True

        # shuffle so that old versions / replicas are spread through the load order
        perm = rng.permutation(n)
        self.cols: dict[str, np.ndarray] = {k: v[perm] for k, v in cols.items()}
        self._make_ids_unique()
        self._compute_latest()
        self._plan_files(rng)

    def _master_key(self) -> np.ndarray:
        c = self.cols
        key = np.zeros(self.tier.n_datasets, dtype=np.uint64)
        for i, f in enumerate(
            (
                "activity_id",
                "institution_id",
                "source_id",
                "experiment_id",
                "sub_experiment_id",
                "variant_label",
                "table_id",
                "variable_id",
                "grid_label",
            )
        ):
            key = key * np.uint64(1_000_003) + c[f].astype(np.uint64) + np.uint64(i)
        return key

    def _make_ids_unique(self) -> None:
        """Bump the version of any record whose (master_id, version, data_node) repeats."""
        mk = self._master_key()
        c = self.cols
        for _ in range(50):
            full = (mk * np.uint64(7919) + c["version"].astype(np.uint64)) * np.uint64(31) + c[
                "data_node"
            ].astype(np.uint64)
            _, first = np.unique(full, return_index=True)
            dup = np.ones(len(full), dtype=bool)
            dup[first] = False
            if not dup.any():
                break
            c["version"][dup] += 1
        else:  # pragma: no cover - astronomically unlikely
            raise RuntimeError("could not make dataset ids unique")
        self._mk = mk

    def _compute_latest(self) -> None:
        """latest = highest version within each (master_id, data_node)."""
        group = self._mk * np.uint64(31) + self.cols["data_node"].astype(np.uint64)
        order = np.lexsort((self.cols["version"], group))
        g = group[order]
        last = np.ones(len(g), dtype=bool)
        last[:-1] = g[:-1] != g[1:]
        latest = np.empty(len(g), dtype=bool)
        latest[order] = last
        self.cols["latest"] = latest

    def _plan_files(self, rng: np.random.Generator) -> None:
        n, nf = self.tier.n_datasets, self.tier.n_files
        if nf < n:
            raise ValueError("need at least one file per dataset")
        w = rng.lognormal(0.0, 1.0, size=n)
        w[self.dists["frequency"].values.index("fx") == self.cols["frequency"]] *= 0.05
        extra = rng.choice(n, size=nf - n, p=w / w.sum())
        self.n_files_of = (1 + np.bincount(extra, minlength=n)).astype(np.int64)
        self.file_start = np.concatenate([[0], np.cumsum(self.n_files_of)[:-1]])
        sizes = np.maximum(rng.lognormal(np.log(50e6), 1.5, size=nf), 10_000).astype(np.int64)
        self.file_size = sizes
        self.dataset_size = np.add.reduceat(sizes, self.file_start)

    # --------------------------------------------------------- record builders
    def _build_lookup_tables(self) -> None:
        d = self.dists
        self._single = {f: [[v] for v in d[f].values] for f in FACETS}
        self._multi_cache: dict[tuple[str, int, int, int], list[str]] = {}
        self._project = ["CMIP6"]
        self._mip_era = ["CMIP6"]
        self._access = ["HTTPServer"]
        self._dft = [DIRECTORY_FORMAT_TEMPLATE]
        self._checksum_type = ["SHA256"]
        self._versions = _yyyymmdd(self.cols["version"]).tolist()
        self._py = {k: v.tolist() for k, v in self.cols.items()}
        self._nodes = d["data_node"].values
        self._index_node = [INDEX_NODES[i] for i in self.node_index_node]
        self._root = [DATA_ROOTS[i] for i in self.node_root]
        self._fx = d["frequency"].values.index("fx")

    def _multi(self, facet: str, a: int, b: int, c: int) -> list[str]:
        key = (facet, a, b, c)
        got = self._multi_cache.get(key)
        if got is None:
            vals = self.dists[facet].values
            got = [vals[x] for x in (a, b, c) if x >= 0]
            self._multi_cache[key] = got
        return got

    def _common(self, i: int) -> tuple[dict[str, Any], str, str, str]:
        """Fields shared by dataset i and its files, plus (master_id, instance_id, data_node)."""
        py = self._py
        d = self.dists
        fields: dict[str, Any] = {}
        for f in FACETS:
            if f == "data_node":
                continue
            if f in MULTI_VALUED:
                fields[f] = self._multi(f, py[f][i], py[f + "#2"][i], py[f + "#3"][i])
            else:
                fields[f] = self._single[f][py[f][i]]
        activity = fields["activity_id"][0]
        sub = d["sub_experiment_id"].values[py["sub_experiment_id"][i]]
        variant = d["variant_label"].values[py["variant_label"][i]]
        member = variant if sub == "none" else f"{sub}-{variant}"
        node_ix = py["data_node"][i]
        node = self._nodes[node_ix]
        master_id = (
            f"CMIP6.{activity}.{fields['institution_id'][0]}.{fields['source_id'][0]}."
            f"{fields['experiment_id'][0]}.{member}.{fields['table_id'][0]}."
            f"{fields['variable_id'][0]}.{fields['grid_label'][0]}"
        )
        instance_id = f"{master_id}.v{self._versions[i]}"
        fields.update(
            project=self._project,
            mip_era=self._mip_era,
            activity_drs=[activity],
            member_id=[member],
            latest=py["latest"][i],
            replica=py["replica"][i],
            retracted=False,
            data_node=node,
            index_node=self._index_node[node_ix],
        )
        return fields, master_id, instance_id, node

    def dataset_id(self, i: int) -> str:
        _, _, instance_id, node = self._common(i)
        return f"{instance_id}|{node}"

    def dataset(self, i: int) -> dict[str, Any]:
        fields, master_id, instance_id, node = self._common(i)
        py = self._py
        y0, ny = py["start_year"][i], py["n_years"][i]
        rec: dict[str, Any] = {
            "id": f"{instance_id}|{node}",
            "type": "Dataset",
            "title": master_id,
            "master_id": master_id,
            "instance_id": instance_id,
            "version": self._versions[i],
        }
        rec.update(fields)
        rec.update(
            size=int(self.dataset_size[i]),
            number_of_files=int(self.n_files_of[i]),
            access=self._access,
            url=[
                f"https://{node}/thredds/catalog/esgcet/{i % 4096}/{instance_id}.xml#{instance_id}"
                "|application/xml+thredds|THREDDS"
            ],
            directory_format_template_=self._dft,
            datetime_start=f"{y0:04d}-01-16T12:00:00Z",
            datetime_stop=f"{y0 + ny - 1:04d}-12-16T12:00:00Z",
        )
        return rec

    def iter_datasets(self) -> Iterator[dict[str, Any]]:
        for i in range(self.tier.n_datasets):
            yield self.dataset(i)

    def iter_files(self) -> Iterator[dict[str, Any]]:
        n = self.tier.n_datasets
        for b0 in range(0, n, FILE_BLOCK):
            b1 = min(n, b0 + FILE_BLOCK)
            f0 = int(self.file_start[b0])
            f1 = int(self.file_start[b1 - 1] + self.n_files_of[b1 - 1])
            brng = np.random.default_rng([self.seed, 7, b0])
            hexes = binascii.hexlify(brng.bytes(48 * (f1 - f0))).decode()
            for i in range(b0, b1):
                yield from self._files_of(i, hexes, int(self.file_start[i]) - f0)

    def _files_of(self, i: int, hexes: str, h0: int) -> Iterator[dict[str, Any]]:
        fields, master_id, instance_id, node = self._common(i)
        py = self._py
        ds_id = f"{instance_id}|{node}"
        base = dict(
            fields, type="File", version="1", dataset_id=ds_id, checksum_type=self._checksum_type
        )
        nfiles = int(self.n_files_of[i])
        fstart = int(self.file_start[i])
        stem = (
            f"{fields['variable_id'][0]}_{fields['table_id'][0]}_{fields['source_id'][0]}_"
            f"{fields['experiment_id'][0]}_{fields['member_id'][0]}_{fields['grid_label'][0]}"
        )
        fixed = py["frequency"][i] == self._fx
        y0, ny = py["start_year"][i], py["n_years"][i]
        step = max(1, -(-ny // nfiles))
        url_dir = (
            f"https://{node}/thredds/fileServer/{self._root[py['data_node'][i]]}/"
            f"{instance_id.replace('.', '/')}/"
        )
        for j in range(nfiles):
            if fixed:
                fname = f"{stem}.nc" if j == 0 else f"{stem}_part{j}.nc"
            else:
                a = y0 + j * step
                fname = f"{stem}_{a:04d}01-{a + step - 1:04d}12.nc"
            h = hexes[(h0 + j) * 96 : (h0 + j + 1) * 96]
            rec = base.copy()
            rec["id"] = f"{instance_id}.{fname}|{node}"
            rec["title"] = fname
            rec["master_id"] = f"{master_id}.{fname}"
            rec["instance_id"] = f"{instance_id}.{fname}"
            rec["checksum"] = [h[:64]]
            rec["tracking_id"] = [
                f"hdl:21.14100/{h[64:72]}-{h[72:76]}-4{h[77:80]}-a{h[81:84]}-{h[84:96]}"
            ]
            rec["size"] = int(self.file_size[fstart + j])
            rec["url"] = [f"{url_dir}{fname}|application/netcdf|HTTPServer"]
            yield rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="100k", choices=sorted(SCALES))
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--show", type=int, default=0, help="print the first N datasets and files")
    args = ap.parse_args()
    t0 = time.perf_counter()
    idx = SyntheticIndex(args.scale, args.seed)
    t1 = time.perf_counter()
    nd = sum(1 for _ in idx.iter_datasets())
    t2 = time.perf_counter()
    nf = sum(1 for _ in idx.iter_files())
    t3 = time.perf_counter()
    print(f"plan {t1 - t0:.2f}s  datasets {nd} in {t2 - t1:.2f}s  files {nf} in {t3 - t2:.2f}s")
    latest = idx.cols["latest"]
    print(f"latest {int(latest.sum())}  replicas {int(idx.cols['replica'].sum())}")
    for f in FACETS:
        col = idx.cols[f][latest]
        vals, counts = np.unique(col, return_counts=True)
        extra = (
            sum(int((idx.cols[f + s][latest] >= 0).sum()) for s in ("#2", "#3"))
            if f in MULTI_VALUED
            else 0
        )
        top = idx.dists[f].values[int(vals[np.argmax(counts)])]
        print(
            f"  {f:20s} distinct={len(vals):5d}  total/numFound={(latest.sum() + extra) / latest.sum():.3f}  top={top} {counts.max() / latest.sum():.1%}"
        )
    if args.show:
        for i, rec in zip(range(args.show), idx.iter_datasets(), strict=False):
            print(json.dumps(rec, indent=1) if i == 0 else rec["id"])
        for i, rec in zip(range(args.show), idx.iter_files(), strict=False):
            print(json.dumps(rec, indent=1) if i == 0 else rec["id"])


if __name__ == "__main__":
    main()
