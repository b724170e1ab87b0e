"""PostgreSQL 15 reference for the search benchmark.

A throwaway cluster (initdb in a temp dir, 127.0.0.1 on a free port, run as the ``postgres``
user when we are root) is loaded with the same synthetic records and answers the same requests
as SQL (see :meth:`query_mix.Query.sql`).  It measures what a competent PostgreSQL-backed
esg-search would cost at the database: numFound + one GROUP BY per facet + the page, without
the HTTP/JSON layer.

Schema choice (justification):

* ``datasets`` has one column per field.  All CMIP6 facets except activity_id, source_type and
  realm hold exactly one value in practice, so they are plain ``text`` columns with a btree
  index each: equality / ``= ANY`` filters use them (bitmap AND across facets) and a facet count
  is a plain ``GROUP BY col``, the cheapest aggregate PostgreSQL has.  A normalised
  (dataset, facet, value) table would need a join or 16x more rows per filtered scan.
* The three multi-valued facets are ``text[]`` with GIN indexes (``&&`` = "any value matches",
  exactly the Solr semantics); their counts ``unnest`` the array.
* Free text (``query=word``) uses a ``tsvector`` over all facet values and the words of the
  identifiers (simple config, i.e. lower-cased, no stemming — like the Solr ``text`` field)
  with a GIN index.
* ``ord`` (load order, primary key) is the stable paging key, as Solr's index order is for
  ``*:*`` dataset queries; files page by ``id`` (esg-search sends ``sort=id asc`` for files),
  served by a btree on ``(dataset_id, id)``.
* The full record is stored as JSON text (``doc``), as Solr stores it, and fetched for the page.
* Facets and numFound come from one statement: GROUPING SETS over the hits, one set per
  scalar facet and per array position of the multi-valued ones (``query_mix._facet_sql``): a
  single HashAggregate pass, measured 1.8x faster at 100k than one GROUP BY / unnest per facet.

Configuration follows common tuning advice for a 24 GB / 2-core box (shared_buffers 4 GB,
work_mem 64 MB, random_page_cost 1.1, JIT off since it only adds latency to short queries).
Tables are created and COPY-loaded in one transaction with ``wal_level=minimal`` (no WAL for the
bulk load); indexes are built after the load, then ANALYZE.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

from query_mix import MAX_VALUES, MULTI_VALUED, SCALAR_COLUMNS, Query, merge_facet_rows

PG_VERSION = "15"
DATASET_SCALARS: tuple[str, ...] = (
    "id",
    "master_id",
    "instance_id",
    "version",
    "data_node",
    "index_node",
)
FACET_SCALARS: tuple[str, ...] = tuple(c for c in SCALAR_COLUMNS if c != "data_node")
SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "shared_buffers": "'4GB'",
    "effective_cache_size": "'12GB'",
    "work_mem": "'64MB'",
    "maintenance_work_mem": "'1GB'",
    "random_page_cost": "1.1",
    "jit": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "synchronous_commit": "off",
    "max_connections": "100",
    "logging_collector": "off",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_pg_bin() -> pathlib.Path | None:
    cand = pathlib.Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")
    if (cand / "pg_ctl").exists():
        return cand
    found = shutil.which("pg_ctl")
    return pathlib.Path(found).resolve().parent if found else None


def ensure_postgres() -> pathlib.Path:
    """Return the PostgreSQL bin dir, installing the Debian package if needed."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True, env=env)
        bin_dir = find_pg_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL installation failed: pg_ctl not found")
    return bin_dir


class PgCluster:
    """A temporary PostgreSQL cluster; use as a context manager."""

    def __init__(self, bin_dir: pathlib.Path | None = None) -> None:
        self.bin_dir = bin_dir or ensure_postgres()
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="esgf-ha-pgref-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=self.root)

    def start(self) -> None:
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-instructions",
        )
        conf = "\n".join(f"{k} = {v}" for k, v in SERVER_SETTINGS.items())
        conf += f"\nport = {self.port}\nunix_socket_directories = '{self.root}'\n"
        with (self.data / "postgresql.conf").open("a") as fh:
            fh.write(conf)
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------------- schema + load
def _dataset_ddl() -> str:
    facet_cols = ",\n  ".join(f"{c} text" for c in FACET_SCALARS)
    multi_cols = ",\n  ".join(f"{c} text[] NOT NULL" for c in MULTI_VALUED)
    return f"""
CREATE TABLE datasets (
  ord integer NOT NULL,
  id text NOT NULL, master_id text NOT NULL, instance_id text NOT NULL, version text NOT NULL,
  data_node text NOT NULL, index_node text NOT NULL,
  project text NOT NULL, latest boolean NOT NULL, replica boolean NOT NULL,
  retracted boolean NOT NULL,
  {facet_cols},
  {multi_cols},
  ftext text NOT NULL,
  search tsvector GENERATED ALWAYS AS (to_tsvector('simple', ftext)) STORED,
  doc text NOT NULL
)"""


FILES_DDL = """
CREATE TABLE files (
  ord bigint NOT NULL, id text NOT NULL, dataset_id text NOT NULL, doc text NOT NULL
)"""

DATASET_COPY_COLS = (
    "ord",
    *DATASET_SCALARS,
    "project",
    "latest",
    "replica",
    "retracted",
    *FACET_SCALARS,
    *MULTI_VALUED,
    "ftext",
    "doc",
)


def _index_ddl() -> list[str]:
    out = [
        "ALTER TABLE datasets ADD PRIMARY KEY (ord)",
        "CREATE UNIQUE INDEX datasets_id ON datasets (id)",
        "CREATE INDEX datasets_data_node ON datasets (data_node)",
        *(f"CREATE INDEX datasets_{c} ON datasets ({c})" for c in FACET_SCALARS),
        *(f"CREATE INDEX datasets_{c} ON datasets USING gin ({c})" for c in MULTI_VALUED),
        "CREATE INDEX datasets_search ON datasets USING gin (search)",
        "ALTER TABLE files ADD PRIMARY KEY (id)",
        "CREATE INDEX files_dataset ON files (dataset_id, id)",
    ]
    return out


_ID_SPLIT = re.compile(r"[^0-9a-z]+")


def _single(rec: dict[str, Any], name: str) -> str | None:
    v = rec.get(name)
    if isinstance(v, list):
        if len(v) > 1:
            raise ValueError(f"{rec['id']}: {name} has several values; schema expects one")
        return v[0] if v else None
    return v


def _multi(rec: dict[str, Any], name: str) -> list[str]:
    v = rec.get(name) or []
    if len(v) > MAX_VALUES:
        raise ValueError(f"{rec['id']}: {name} has more than {MAX_VALUES} values")
    return list(v)


def _dataset_row(ord_: int, rec: dict[str, Any]) -> tuple[Any, ...]:
    words: list[str] = []
    for f in (*FACET_SCALARS, *MULTI_VALUED, "data_node"):
        v = rec.get(f)
        if isinstance(v, list):
            words.extend(v)
        elif v:
            words.append(v)
    # identifiers split as our index splits them: PostgreSQL's parser would keep a dotted id
    # whole as one "host" or "file" token
    for f in ("id", "master_id"):
        words.extend(w for w in _ID_SPLIT.split(str(rec.get(f, "")).lower()) if w)
    return (
        ord_,
        *(rec[c] for c in DATASET_SCALARS),
        rec["project"][0],
        rec["latest"],
        rec["replica"],
        rec.get("retracted", False),
        *(_single(rec, c) for c in FACET_SCALARS),
        *(_multi(rec, c) for c in MULTI_VALUED),
        " ".join(words),
        orjson.dumps(rec).decode(),
    )


@dataclass
class LoadTimings:
    datasets_s: float = 0.0
    files_s: float = 0.0
    indexes_s: float = 0.0
    analyze_s: float = 0.0
    n_datasets: int = 0
    n_files: int = 0
    db_size_bytes: int = 0

    @property
    def total_s(self) -> float:
        return self.datasets_s + self.files_s + self.indexes_s + self.analyze_s


def load(
    dsn: str, datasets: Iterable[dict[str, Any]], files: Iterable[dict[str, Any]]
) -> LoadTimings:
    """COPY the records in, build the indexes, ANALYZE.  Returns per-phase wall times."""
    t = LoadTimings()
    with psycopg.connect(dsn, autocommit=False) as conn:
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute(_dataset_ddl())
            cur.execute(FILES_DDL)
            with cur.copy(f"COPY datasets ({', '.join(DATASET_COPY_COLS)}) FROM STDIN") as cp:
                for i, rec in enumerate(datasets):
                    cp.write_row(_dataset_row(i, rec))
                    t.n_datasets += 1
            t1 = time.perf_counter()
            t.datasets_s = t1 - t0
            with cur.copy("COPY files (ord, id, dataset_id, doc) FROM STDIN") as cp:
                for i, rec in enumerate(files):
                    cp.write_row((i, rec["id"], rec["dataset_id"], orjson.dumps(rec).decode()))
                    t.n_files += 1
        conn.commit()
        t2 = time.perf_counter()
        t.files_s = t2 - t1
        conn.autocommit = True
        for ddl in _index_ddl():
            conn.execute(ddl)
        t3 = time.perf_counter()
        t.indexes_s = t3 - t2
        conn.execute("VACUUM ANALYZE datasets")
        conn.execute("VACUUM ANALYZE files")
        t.analyze_s = time.perf_counter() - t3
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        t.db_size_bytes = int(row[0]) if row else 0
    return t


# ------------------------------------------------------------------------------ queries
@dataclass
class PgAnswer:
    num_found: int
    ids: list[str]
    facets: dict[str, dict[str, int]]


def _collect(q: Query, results: Iterator[tuple[str, list[tuple[Any, ...]]]]) -> PgAnswer:
    ans = PgAnswer(0, [], {f: {} for f in q.facets})
    for purpose, rows in results:
        if purpose == "count":
            ans.num_found = int(rows[0][0])
        elif purpose == "page":
            ans.ids = [r[0] for r in rows]
        else:
            ans.num_found, got = merge_facet_rows(rows)
            ans.facets.update(got)
    return ans


def answer(conn: psycopg.Connection[Any], q: Query) -> PgAnswer:
    def run() -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
        for purpose, sql, args in q.sql():
            yield purpose, conn.execute(sql, args).fetchall()

    return _collect(q, run())


async def answer_async(conn: psycopg.AsyncConnection[Any], q: Query) -> PgAnswer:
    got: list[tuple[str, list[tuple[Any, ...]]]] = []
    for purpose, sql, args in q.sql():
        cur = await conn.execute(sql, args)
        got.append((purpose, await cur.fetchall()))
    return _collect(q, iter(got))


def main() -> None:
    from query_mix import build_mix
    from synth import SCALES, SyntheticIndex

    ap = argparse.ArgumentParser(
        description="Load the synthetic index into a throwaway PG 15 "
        "and time the query mix sequentially."
    )
    ap.add_argument("--scale", default="100k", choices=sorted(SCALES))
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    idx = SyntheticIndex(args.scale)
    with PgCluster() as pg:
        print(f"cluster on 127.0.0.1:{pg.port} in {pg.root}")
        t = load(pg.dsn, idx.iter_datasets(), idx.iter_files())
        print(f"load: {t}")
        mix = build_mix(idx, args.queries)
        per: dict[str, list[float]] = {}
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            for q in mix:
                t0 = time.perf_counter()
                ans = answer(conn, q)
                per.setdefault(q.klass, []).append(time.perf_counter() - t0)
                if q.klass == "file_by_dataset" and ans.num_found != q.meta["expected"]:
                    print(f"MISMATCH {q.query_string()}: {ans.num_found} != {q.meta['expected']}")
        for k, v in sorted(per.items()):
            v.sort()
            print(
                f"{k:20s} n={len(v):4d} p50={v[len(v) // 2] * 1e3:8.2f} ms  max={v[-1] * 1e3:8.2f} ms"
            )


if __name__ == "__main__":
    main()
