"""Run the real esgcet 5.5.3 publisher (``esgpublish``) against a Solr-style index.

Run with the esgcet client venv (it needs netCDF4 to write the sample files):

    .venv-clients/esgcet/bin/python tests/clients/drive_esgcet.py \
        --index-node 127.0.0.1:PORT --workdir /tmp/pub [--data-node esgf-data.example.org] \
        [--version 20190308] [--variable tas] [--nfiles 2] [--unpublish retract|delete]

What it does:

1. writes ``--nfiles`` tiny CMIP6 netCDF files (36 longitudes so esgcet reports a
   global west/east range, a ``tracking_id`` per file) under ``WORKDIR/data``;
2. writes the mapfile ``<master_id>.v<version>.map`` (esgprep 3 format, SHA256);
3. writes the minimum ``esg.yaml`` for the Solr back-end (see ``write_config``);
4. runs ``esgpublish --config esg.yaml --map <mapfile> --project cmip6`` with ``HOME``
   pointed at WORKDIR; esgcet then sends ``GET https://<index>/esg-search/search/?...``
   (latest-version check), ``POST /esg-search/ws/update`` twice if an older version is
   found, and one ``POST /esg-search/ws/publish`` per record (files first, dataset last);
5. optionally un-publishes (see ``unpublish``).

TLS and certificates (esgcet 5.5.3 source, ``solr/pub_client.py``, ``util/args.py``):

* the index URL is always ``https://<index_node>/esg-search/...``; no scheme option, so
  the index under test must speak TLS (``index_node`` may carry ``:port``);
* ``verify=False`` unless ``esgpublish --verify`` is given; with ``--verify`` requests
  uses certifi's bundle, or ``REQUESTS_CA_BUNDLE`` (``--ca-bundle`` here sets it);
* a client certificate is *requested* with ``--certificate PEM`` or ``cert:`` in the
  config (sets ``auth=True``), and ``publisherClient`` would then call
  ``requests.post(url, data=xml, cert=(pem, pem))`` (one PEM holding cert and key).
  BUT in 5.5.3 ``ESGPubIndex`` builds its client with ``cert_fn=""`` and
  ``ESGUpdateSolr`` without ``auth``: requests gets ``cert=("", "")``, treats the empty
  path as "no certificate" and sends none. Verified against a TLS server that requires
  client certificates: the handshake fails, ``publish()`` swallows the SSLError (logs
  "SSL error!") and the run still prints ``PUB_STATUS=PASS`` (exit 1 only because the
  later ``/search/`` update check raises). So esgcet 5.5.3 cannot publish to an index
  that demands mutual TLS; authorise it by network/TLS-server config instead.
* non-200 answers make esgcet ``exit(-status)`` (e.g. 400 -> exit code 112);
  connection/TLS errors on publish are swallowed (logged, exit 0).

``esgunpublish`` (CLI) is broken for the Solr back-end in 5.5.3: ``cli/esgunpublish.py``
never puts ``auth``/``cert`` into the args dict, ``ESGUnpublishSolr.run`` reads
``args["auth"]`` -> KeyError -> "Failed to unpublish", exit 1 (and CMIP6 datasets also
need ``pid_creds`` plus a reachable PID RabbitMQ). ``--unpublish`` therefore runs the
CLI once (recording what it did) and then performs the same wire calls through
esgcet's own library classes (``ESGSearchCheck`` + ``publisherClient.retract/delete``):
``GET /esg-search/search/?format=...&id=<id>&fields=id,retracted`` then a form POST
``id=<id>`` to ``/esg-search/ws/retract`` or ``/ws/delete``.

Prints ONE JSON object on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

DRS = [
    "mip_era",
    "activity_drs",
    "institution_id",
    "source_id",
    "experiment_id",
    "member_id",
    "table_id",
    "variable_id",
    "grid_label",
]


def write_sample_files(
    root: Path, master_id: str, version: str, variable: str, nfiles: int
) -> list[dict[str, Any]]:
    """Write small CF/CMIP6-like monthly files, one year each; return mapfile rows."""
    import netCDF4
    import numpy as np

    parts = master_id.split(".")
    facets = dict(zip(DRS, parts, strict=True))
    ddir = root.joinpath(*parts, f"v{version}")
    ddir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(nfiles):
        year = 1850 + i
        name = (
            f"{variable}_{facets['table_id']}_{facets['source_id']}_{facets['experiment_id']}_"
            f"{facets['member_id']}_{facets['grid_label']}_{year}01-{year}12.nc"
        )
        path = ddir / name
        with netCDF4.Dataset(path, "w") as nc:
            nc.createDimension("time", None)
            nc.createDimension("lat", 4)
            nc.createDimension("lon", 36)
            t = nc.createVariable("time", "f8", ("time",))
            t.standard_name, t.units, t.calendar = "time", "days since 1850-01-01", "noleap"
            t.axis = "T"
            t[:] = np.arange(12) * 30.0 + 15.0 + 365.0 * i
            la = nc.createVariable("lat", "f8", ("lat",))
            la.standard_name, la.units, la.axis = "latitude", "degrees_north", "Y"
            la[:] = [-67.5, -22.5, 22.5, 67.5]
            lo = nc.createVariable("lon", "f8", ("lon",))
            lo.standard_name, lo.units, lo.axis = "longitude", "degrees_east", "X"
            lo[:] = np.arange(36) * 10.0
            v = nc.createVariable(variable, "f4", ("time", "lat", "lon"), zlib=True)
            v.standard_name, v.long_name, v.units = (
                "air_temperature",
                "Near-Surface Air Temperature",
                "K",
            )
            v[:] = 280.0 + np.random.default_rng(i).random((12, 4, 36), dtype="f4")
            nc.setncatts(
                {
                    "mip_era": facets["mip_era"],
                    "activity_id": facets["activity_drs"],
                    "institution_id": facets["institution_id"],
                    "source_id": facets["source_id"],
                    "experiment_id": facets["experiment_id"],
                    "experiment": "all-forcing simulation of the recent past",
                    "variant_label": facets["member_id"],
                    "sub_experiment_id": "none",
                    "table_id": facets["table_id"],
                    "variable_id": variable,
                    "grid_label": facets["grid_label"],
                    "frequency": "mon",
                    "realm": "atmos",
                    "product": "model-output",
                    "nominal_resolution": "100 km",
                    "source_type": "AOGCM AER",
                    "grid": "native grid",
                    "creation_date": "2019-03-08T00:00:00Z",
                    "data_specs_version": "01.00.29",
                    "title": f"{facets['source_id']} output prepared for CMIP6",
                    "tracking_id": f"hdl:21.14100/{uuid.uuid4()}",
                    "Conventions": "CF-1.7 CMIP-6.2",
                }
            )
        data = path.read_bytes()
        rows.append(
            {
                "path": str(path),
                "size": len(data),
                "mtime": path.stat().st_mtime,
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    return rows


def write_mapfile(path: Path, master_id: str, version: str, rows: list[dict[str, Any]]) -> None:
    with path.open("w") as fh:
        for r in rows:
            fh.write(
                f"{master_id}.v{version} | {r['path']} | {r['size']} | mod_time={r['mtime']}"
                f" | checksum={r['sha256']} | checksum_type=SHA256\n"
            )


def write_config(path: Path, args: argparse.Namespace, data_root: Path) -> dict[str, Any]:
    """Minimum esg.yaml for publishing CMIP6 to a Solr index (esgcet 5.5.3 util/args.py).

    * ``data_roots`` (required): filesystem prefix -> THREDDS root name used in the URLs.
    * ``index_node``/``data_node``: bare ``host[:port]``; URLs are built as https://.
    * ``cmor_path``: required for project cmip6 but unused by the 5.5.3 workflow.
    * ``pid_creds: {}``: the PID is derived locally (uuid3 of the instance id); nothing
      contacts the PID RabbitMQ on publish. ``disable_citation`` drops ``citation_url``.
    * ``globus_uuid: none`` drops the ``globus:`` url and keeps ``access=[HTTPServer]``.
    * ``disable_qaqc``: the compliance checker only runs for cordex-cmip6/cmip7 anyway.
    * no ``stac_config``/``globus_index`` -> the Solr (``/esg-search/ws``) back-end.
    * ``silent``/``verbose`` must be strings (esgcet does ``'true' in value``).
    """
    cfg: dict[str, Any] = {
        "index_node": args.index_node,
        "data_node": args.data_node,
        "data_roots": {str(data_root): args.root_name},
        "cmor_path": str(data_root),
        "pid_creds": {},
        "globus_uuid": "none",
        "disable_citation": bool(args.disable_citation),
        "disable_qaqc": True,
        "silent": "false",
        "verbose": "true" if args.verbose else "false",
        "set_replica": False,
    }
    if args.cert:
        cfg["cert"] = args.cert
    path.write_text(json.dumps(cfg, indent=2))  # JSON is valid YAML
    return cfg


def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> dict[str, Any]:
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return {"cmd": cmd, "returncode": None, "error": f"timeout after {exc.timeout}s"}
    lines = (p.stdout + "\n" + p.stderr).splitlines()
    return {
        "cmd": cmd,
        "returncode": p.returncode,
        "seconds": round(time.monotonic() - t0, 2),
        "pub_status": [ln.split("PUB_STATUS=", 1)[1] for ln in lines if "PUB_STATUS=" in ln],
        "errors": [ln[:400] for ln in lines if " ERROR " in ln or "Error" in ln][:20],
        "stdout_tail": p.stdout.splitlines()[-15:],
        "stderr_tail": [ln[:400] for ln in p.stderr.splitlines()[-25:]],
    }


def unpublish(
    args: argparse.Namespace, dataset_id: str, cfg_path: Path, env: dict[str, str], workdir: Path
) -> dict[str, Any]:
    bindir = Path(sys.executable).parent
    cli = [str(bindir / "esgunpublish"), "--config", str(cfg_path), "--dset-id", dataset_id]
    if args.unpublish == "delete":
        cli.append("--delete")
    out: dict[str, Any] = {"cli": run(cli, env, workdir, args.timeout)}

    # The same wire calls through esgcet's own classes (the CLI wiring is broken).
    code = (
        "import json, sys\n"
        "from esgcet.solr.search_check import ESGSearchCheck\n"
        "from esgcet.solr.pub_client import publisherClient\n"
        "node, dsid, action, verify = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == 'true'\n"
        "found, not_retracted = ESGSearchCheck(index_node=node, verify=verify).run_check(dsid)\n"
        "cli = publisherClient('', node, verify=verify)\n"
        "if found and (not_retracted or action == 'delete'):\n"
        "    getattr(cli, action)(dsid)\n"
        "print(json.dumps({'found': found, 'not_retracted': not_retracted}))\n"
    )
    lib = run(
        [
            sys.executable,
            "-c",
            code,
            args.index_node,
            dataset_id,
            args.unpublish,
            "true" if args.verify else "false",
        ],
        env,
        workdir,
        args.timeout,
    )
    out["library"] = lib
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index-node", required=True, help="host:port of the HTTPS index")
    p.add_argument("--data-node", default="esgf-data.example.org", help="host[:port] in file URLs")
    p.add_argument("--workdir", required=True)
    p.add_argument("--root-name", default="esg_dataroot", help="THREDDS data root name")
    p.add_argument("--institution", default="NCAR")
    p.add_argument("--source-id", default="CESM2")
    p.add_argument("--experiment", default="historical")
    p.add_argument("--variable", default="tas")
    p.add_argument("--version", default="20190308")
    p.add_argument("--nfiles", type=int, default=2)
    p.add_argument("--cert", default=None, help="PEM (cert+key) -> config 'cert:' (see docstring)")
    p.add_argument("--verify", action="store_true", help="pass esgpublish --verify")
    p.add_argument("--ca-bundle", default=None, help="REQUESTS_CA_BUNDLE for --verify")
    p.add_argument("--disable-citation", action="store_true")
    p.add_argument(
        "--verbose", action="store_true", help="esgpublish --verbose (logs every XML doc)"
    )
    p.add_argument("--dry-run", action="store_true", help="esgpublish --dry-run")
    p.add_argument("--unpublish", choices=["retract", "delete"], default=None)
    p.add_argument("--skip-publish", action="store_true", help="only (re)write inputs / unpublish")
    p.add_argument("--timeout", type=float, default=300.0)
    args = p.parse_args(argv)

    workdir = Path(args.workdir).resolve()
    data_root = workdir / "data"
    data_root.mkdir(parents=True, exist_ok=True)
    master_id = ".".join(
        [
            "CMIP6",
            "CMIP",
            args.institution,
            args.source_id,
            args.experiment,
            "r1i1p1f1",
            "Amon",
            args.variable,
            "gn",
        ]
    )
    instance_id = f"{master_id}.v{args.version}"
    dataset_id = f"{instance_id}|{args.data_node}"

    rows = write_sample_files(data_root, master_id, args.version, args.variable, args.nfiles)
    mapfile = workdir / f"{instance_id}.map"
    write_mapfile(mapfile, master_id, args.version, rows)
    cfg_path = workdir / "esg.yaml"
    cfg = write_config(cfg_path, args, data_root)

    env = dict(os.environ, HOME=str(workdir))
    env.pop("ESG_CONFIG_FILE", None)
    if args.ca_bundle:
        env["REQUESTS_CA_BUNDLE"] = args.ca_bundle

    result: dict[str, Any] = {
        "client": "esgcet",
        "master_id": master_id,
        "instance_id": instance_id,
        "dataset_id": dataset_id,
        "config_path": str(cfg_path),
        "config": cfg,
        "mapfile": str(mapfile),
        "mapfile_lines": mapfile.read_text().splitlines(),
        "files": rows,
    }
    if not args.skip_publish:
        cmd = [
            str(Path(sys.executable).parent / "esgpublish"),
            "--config",
            str(cfg_path),
            "--map",
            str(mapfile),
            "--project",
            "cmip6",
        ]
        for flag, on in (
            ("--verify", args.verify),
            ("--verbose", args.verbose),
            ("--dry-run", args.dry_run),
        ):
            if on:
                cmd.append(flag)
        result["publish"] = run(cmd, env, workdir, args.timeout)
    if args.unpublish:
        result["unpublish"] = unpublish(args, dataset_id, cfg_path, env, workdir)
    json.dump(result, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
