"""The nginx mode with real nginx (Debian package): our node authorises and answers with
X-Accel-Redirect, nginx sends the bytes; the config comes from `serve data
--write-nginx-config`."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from esgf_ha.common.auth import issue_token
from tests.datanode_data import batch_for, write_dataset
from tests.servers import DataServer, IndexServer, free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def test_nginx_serves_the_bytes_our_node_authorises(tmp_path: Path) -> None:
    if NGINX is None:
        pytest.fail("nginx is missing: `make system-deps` installs nginx-light")
    root, secret = tmp_path / "data", tmp_path / "secret"
    public = write_dataset(root, seed=5)
    restricted = write_dataset(secret, seed=6, variable_id="pr")
    keys = tmp_path / "keys"
    token = issue_token(keys, ["esgf:download"])
    wrong = issue_token(keys, ["esgf:publish"])
    node_port, front_port = free_port(), free_port()
    common = [
        f"--root=esg_dataroot={root}",
        f"--root=restricted={secret}",
        "--restricted=restricted",
        f"--token-public-key={keys / 'keys' / 'token-signing.pub.pem'}",
    ]
    conf = tmp_path / "nginx.conf"
    written = subprocess.run(
        [
            sys.executable,
            "-m",
            "esgf_ha",
            "serve",
            "data",
            "--listen",
            f"127.0.0.1:{node_port}",
            *common,
            "--write-nginx-config",
            str(conf),
            "--nginx-listen",
            f"127.0.0.1:{front_port}",
            "--nginx-dir",
            str(tmp_path / "nginx"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert written.returncode == 0, written.stderr
    assert "X-Accel" not in conf.read_text() and "internal;" in conf.read_text()
    index = IndexServer(tmp_path / "index").start()
    front_host = f"127.0.0.1:{front_port}"
    assert index.publish(batch_for([public], front_host, f"http://{front_host}")).status_code == 200
    node = DataServer(
        tmp_path / "state",
        {},
        index_url=index.url,
        listen=f"127.0.0.1:{node_port}",
        extra_args=[*common, "--accel-prefix", "/_esgf_internal"],
    ).start()
    nginx = subprocess.Popen(
        [NGINX, "-c", str(conf), "-g", "daemon off; user root;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        front = f"http://127.0.0.1:{front_port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(front + "/livez", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        body = public.paths[0].read_bytes()
        with httpx.Client(base_url=front, timeout=30) as c:
            url = f"/thredds/fileServer/esg_dataroot/{public.rels[0]}"
            r = c.get(url)
            assert r.status_code == 200 and r.content == body
            assert r.headers["server"].startswith("nginx")
            assert "x-accel-redirect" not in r.headers
            digest = base64.b64encode(bytes.fromhex(public.files[0].checksum)).decode()
            assert r.headers["digest"] == f"SHA-256={digest}"  # the node's header survives
            r = c.get(url, headers={"Range": "bytes=10-109"})
            assert r.status_code == 206 and r.content == body[10:110]
            assert c.head(url).headers["content-length"] == str(len(body))
            # the node still decides: hostile paths, dot-files and the token
            assert c.get("/thredds/fileServer/esg_dataroot/%2e%2e/x").status_code == 400
            assert c.get("/_esgf_internal/esg_dataroot/" + public.rels[0]).status_code == 404
            secret_url = f"/thredds/fileServer/restricted/{restricted.rels[0]}"
            r = c.get(secret_url)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
            assert (
                c.get(secret_url, headers={"Authorization": f"Bearer {wrong}"}).status_code == 403
            )
            r = c.get(secret_url, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200 and r.content == restricted.paths[0].read_bytes()
    finally:
        nginx.terminate()
        nginx.communicate(timeout=10)  # reaps it and closes our end of its stderr pipe
        node.stop()
        index.stop()
