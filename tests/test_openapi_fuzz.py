"""schemathesis against the index's OpenAPI description, over HTTP: never a 500."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.servers import IndexServer


def test_schemathesis_finds_no_server_error(loaded_index: IndexServer, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("schemathesis")
    cmd = [
        str(st),
        "run",
        f"{loaded_index.url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "60",
        "--generation-deterministic",
        "--header",
        f"Authorization: Bearer {loaded_index.token()}",
        "--request-timeout",
        "30",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    output = result.stdout + result.stderr
    assert "generated" in output, output[-4000:]
    if result.returncode != 0:
        # esg-search answers an unknown `format` with 501 and so do we, deliberately (the
        # issue asks for its status codes); any other 5xx fails this test
        statuses = re.findall(r"\[(5\d\d)\] ", output)
        assert statuses and set(statuses) == {"501"}, output[-4000:]
        assert "Invalid requested format" in output
