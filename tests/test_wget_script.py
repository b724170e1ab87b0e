"""The generated wget script, run with bash and real wget against a file server holding the
sample files: downloads, checksum verification, failure report, resume and re-run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from esgf_ha.index.wget import ScriptFile, render_script
from esgf_ha.records.samples import as_batch, cmip6_samples
from tests.fileserver import RangeFileServer
from tests.servers import IndexServer


@pytest.fixture
def setup(tmp_path: Path, index_server: IndexServer):
    served = tmp_path / "served"
    files_root = served / "thredds" / "fileServer" / "esg_dataroot"
    with RangeFileServer(served) as fs:
        samples = cmip6_samples(3, seed=7, data_node=f"127.0.0.1:{fs.port}", url_base=fs.base)
        for s in samples:
            for publish_path, body in s.bodies.items():
                path = files_root / publish_path.split("/", 1)[1]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(body)
        assert index_server.publish(as_batch(samples)).status_code == 200
        yield index_server, fs, samples, files_root, tmp_path / "work"


def get_script(server: IndexServer, **params: str) -> str:
    with server.client() as c:
        r = c.get("/esg-search/wget", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/x-sh")
    assert "attachment; filename=wget-" in r.headers["content-disposition"]
    return r.text


def run(script: str, work: Path, *args: str) -> subprocess.CompletedProcess:
    work.mkdir(parents=True, exist_ok=True)
    (work / "wget.sh").write_text(script)
    return subprocess.run(
        ["bash", "wget.sh", *args], cwd=work, capture_output=True, text=True, timeout=120
    )


def test_script_downloads_and_verifies(setup) -> None:
    server, fs, samples, _, work = setup
    dataset = samples[0].dataset
    script = get_script(server, dataset_id=str(dataset["id"]))
    assert "# ESG Federation download script" in script
    assert f"# Search URL: {server.url}/esg-search/wget" in script
    result = run(script, work)
    assert result.returncode == 0, result.stderr
    assert "0 failed" in result.stdout
    for name, body in ((p.rsplit("/", 1)[1], b) for p, b in samples[0].bodies.items()):
        assert (work / name).read_bytes() == body
    # a second run verifies nothing new and downloads nothing
    before = len(fs.requests)
    again = run(script, work)
    assert again.returncode == 0 and len(fs.requests) == before


def test_corrupt_file_is_reported(setup) -> None:
    server, fs, samples, files_root, work = setup
    victim = next(iter(samples[1].bodies))
    (files_root / victim.split("/", 1)[1]).write_bytes(b"corrupted bytes")
    script = get_script(server, dataset_id=str(samples[1].dataset["id"]))
    result = run(script, work)
    assert result.returncode == 1
    assert "checksum mismatch" in result.stderr and victim.rsplit("/", 1)[1] in result.stderr
    assert "1 failed" in result.stdout


def test_partial_file_is_resumed(setup) -> None:
    server, fs, samples, _, work = setup
    publish_path, body = next(iter(samples[2].bodies.items()))
    name = publish_path.rsplit("/", 1)[1]
    work.mkdir(parents=True, exist_ok=True)
    (work / name).write_bytes(body[: len(body) // 2])
    script = get_script(server, dataset_id=str(samples[2].dataset["id"]))
    result = run(script, work)
    assert result.returncode == 0, result.stderr
    assert (work / name).read_bytes() == body
    ranges = [r for m, p, r in fs.requests if p.endswith(name)]
    assert ranges and ranges[0] == f"bytes={len(body) // 2}-"


def test_download_structure_and_dry_run(setup) -> None:
    server, _, samples, _, work = setup
    script = get_script(server, project="CMIP6", download_structure="source_id,variable_id")
    result = run(script, work, "-n")
    assert result.returncode == 0
    lines = [line for line in result.stdout.splitlines() if "<-" in line]
    # the same file name in two versions lands on one path: esg-search keeps the first
    targets = {
        f"{f['source_id']}/{f['variable_id']}/{f['title']}" for s in samples for f in s.files
    }
    assert sorted(line.split("  <-  ")[0] for line in lines) == sorted(targets)
    first = samples[0].dataset
    assert any(line.startswith(f"{first['source_id']}/{first['variable_id']}/") for line in lines)
    assert not list(work.glob("*.nc"))


def script_for_served_sample(
    index_server: IndexServer, fs: RangeFileServer, served: Path, seed: int
) -> str:
    """Publish one sample dataset whose files `fs` serves from `served`; its wget script."""
    sample = cmip6_samples(1, seed=seed, data_node=f"127.0.0.1:{fs.port}", url_base=fs.base)[0]
    for publish_path, body in sample.bodies.items():
        path = served / "thredds/fileServer/esg_dataroot" / publish_path.split("/", 1)[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    assert index_server.publish(as_batch([sample])).status_code == 200
    return get_script(index_server, dataset_id=str(sample.dataset["id"]))


def test_token_is_sent_when_given(tmp_path: Path, index_server: IndexServer) -> None:
    served = tmp_path / "served"
    with RangeFileServer(served, token="s3cret") as fs:
        script = script_for_served_sample(index_server, fs, served, seed=9)
        denied = run(script, tmp_path / "w1")
        assert denied.returncode == 1
        allowed = run(script, tmp_path / "w2", "-t", "s3cret")
        assert allowed.returncode == 0, allowed.stderr


def test_wget_endpoint_edge_cases(index_server: IndexServer) -> None:
    with index_server.client(follow_redirects=False) as c:
        r = c.get("/esg-search/wget")
        assert r.status_code == 302 and "limit=1" in r.headers["location"]
        r = c.get("/esg-search/wget", params={"project": "nothing"})
        assert r.status_code == 200 and r.text == "No files were found that matched the query"
        r = c.get("/esg-search/wget", params={"type": "Dataset"})
        assert r.status_code == 400 and "fixed to value: 'File'" in r.text
        r = c.post("/esg-search/wget", data={"project": "nothing"})
        assert r.status_code == 200


# -- the option set of the esg-search script ---------------------------------------------------
# Every flag its `getopts` line names, with whether it takes a value. A user's command line from
# an ESGF guide must never end in a usage message.
ESG_SEARCH_FLAGS = {
    "c": True, "p": False, "f": False, "F": True, "o": True, "w": True, "i": False, "s": False,
    "u": False, "U": False, "n": False, "d": False, "v": False, "q": False, "h": False,
    "H": False, "I": True, "T": False,
}  # fmt: skip
NO_OP_FLAGS = {"H": None, "o": "https://idp.example/openid/someone", "I": "someone", "f": None,
               "T": None}  # fmt: skip


def test_script_accepts_every_flag_of_the_esg_search_script(setup) -> None:
    server, _, samples, _, work = setup
    script = get_script(server, dataset_id=str(samples[0].dataset["id"]))
    getopts = next(line for line in script.splitlines() if "getopts" in line)
    spec = getopts.split('"')[1].lstrip(":")
    ours = {flag: spec[i + 1 : i + 2] == ":" for i, flag in enumerate(spec) if flag != ":"}
    for flag, takes_value in ESG_SEARCH_FLAGS.items():
        assert flag in ours, f"-{flag} is not accepted"
        assert ours[flag] == takes_value, f"-{flag} takes a value: {takes_value}"
    help_text = run(script, work, "-h")
    assert help_text.returncode == 0
    for flag in ESG_SEARCH_FLAGS:
        assert f"-{flag}" in help_text.stdout, f"-{flag} is not in the help"


@pytest.mark.parametrize("flag", sorted(NO_OP_FLAGS))
def test_no_op_flags_download_with_a_note(setup, flag: str) -> None:
    server, fs, samples, _, work = setup
    script = get_script(server, dataset_id=str(samples[0].dataset["id"]))
    value = NO_OP_FLAGS[flag]
    result = run(script, work, "-s", f"-{flag}", *([value] if value else []))
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and f"-{flag} ignored" in notes[0], result.stderr
    for name, body in ((p.rsplit("/", 1)[1], b) for p, b in samples[0].bodies.items()):
        assert (work / name).read_bytes() == body


def test_skip_security_and_openid_arguments_as_the_guides_write_them(setup) -> None:
    server, _, samples, _, work = setup
    script = get_script(server, dataset_id=str(samples[1].dataset["id"]))
    plain = run(script, work / "a", "-s")
    assert plain.returncode == 0, plain.stderr
    assert "note:" not in plain.stderr  # -s has its meaning here: no credentials are needed
    assert "0 failed" in plain.stdout
    # `script -H openid username` from older guides: positional arguments are noted, not fatal
    guide = run(script, work / "b", "-s", "-i", "https://idp.example/openid/me", "me")
    assert guide.returncode == 0, guide.stderr
    assert "OpenID and user name arguments ignored" in guide.stderr
    assert sorted(p.name for p in (work / "b").glob("*.nc")) == sorted(
        p.rsplit("/", 1)[1] for p in samples[1].bodies
    )


def test_unknown_flag_and_missing_value_are_refused(setup) -> None:
    server, fs, samples, _, work = setup
    script = get_script(server, dataset_id=str(samples[0].dataset["id"]))
    before = len(fs.requests)
    bad = run(script, work, "-Z")
    assert bad.returncode == 2 and "unknown option -Z" in bad.stderr
    missing = run(script, work, "-F")
    assert missing.returncode == 2 and "option -F needs a value" in missing.stderr
    assert len(fs.requests) == before


def test_dry_run_downloads_nothing(setup) -> None:
    server, fs, samples, _, work = setup
    script = get_script(server, dataset_id=str(samples[0].dataset["id"]))
    before = len(fs.requests)
    result = run(script, work, "-s", "-n")
    assert result.returncode == 0
    listed = [line.split("  <-  ") for line in result.stdout.splitlines() if "  <-  " in line]
    assert sorted(name for name, _ in listed) == sorted(
        p.rsplit("/", 1)[1] for p in samples[0].bodies
    )
    assert all(url.startswith(fs.base) for _, url in listed)
    assert len(fs.requests) == before and not list(work.glob("*.nc"))
    assert not list(work.glob(".*.status"))


def test_write_list_then_read_it_back(setup) -> None:
    server, fs, samples, _, work = setup
    script = get_script(server, project="CMIP6")
    written = run(script, work, "-w", "list.txt")
    assert written.returncode == 0 and len(fs.requests) == 0
    lines = (work / "list.txt").read_text().splitlines()
    # one line a distinct file name (two versions of a file land on one path)
    assert len(lines) == len({f["title"] for s in samples for f in s.files})
    # keep one file of the list: -F downloads exactly that one
    chosen = next(line for line in lines if samples[2].files[0]["title"] in line)
    (work / "one.txt").write_text(chosen + "\n")
    result = run(script, work, "-F", "one.txt")
    assert result.returncode == 0, result.stderr
    assert [p.name for p in work.glob("*.nc")] == [samples[2].files[0]["title"]]
    # '-' reads the list from standard input
    piped = subprocess.run(
        ["bash", "wget.sh", "-n", "-F", "-"], cwd=work, input=chosen + "\n",
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert piped.returncode == 0
    assert [line.split("  <-  ")[0] for line in piped.stdout.splitlines() if "<-" in line] == [
        samples[2].files[0]["title"]
    ]


def test_quiet_verbose_and_debug_output(setup) -> None:
    server, _, samples, _, work = setup
    script = get_script(server, dataset_id=str(samples[0].dataset["id"]))
    quiet = run(script, work / "q", "-q")
    normal = run(script, work / "n")
    verbose = run(script, work / "v", "-v")
    debug = run(script, work / "d", "-d")
    for result in (quiet, normal, verbose, debug):
        assert result.returncode == 0, result.stderr
        assert "0 failed" in result.stdout
    assert "downloading" not in quiet.stdout and quiet.stderr == ""
    assert "downloading" in normal.stdout
    assert len(quiet.stdout + quiet.stderr) < len(normal.stdout + normal.stderr)
    assert len(normal.stdout + normal.stderr) < len(verbose.stdout + verbose.stderr)
    commands = [line for line in debug.stderr.splitlines() if line.startswith("wget ")]
    assert len(commands) == len(samples[0].files)
    assert "wget " not in verbose.stderr.replace("wget: ", "")


def test_debug_never_prints_the_token(tmp_path: Path, index_server: IndexServer) -> None:
    served = tmp_path / "served"
    with RangeFileServer(served, token="s3cret") as fs:
        script = script_for_served_sample(index_server, fs, served, seed=5)
        result = run(script, tmp_path / "w", "-d", "-t", "s3cret")
        assert result.returncode == 0, result.stderr
        assert "wget " in result.stderr and "s3cret" not in result.stdout + result.stderr


def test_client_certificate_is_used_when_readable(setup) -> None:
    server, _, samples, _, work = setup
    script = get_script(server, dataset_id=str(samples[0].dataset["id"]))
    missing = run(script, work / "a", "-d", "-c", "no-such.pem")
    assert missing.returncode == 0, missing.stderr
    assert "-c no-such.pem: no such readable file" in missing.stderr
    (work / "b").mkdir(parents=True)
    (work / "b" / "cred.pem").write_text("PEM placeholder: plain HTTP never reads it\n")
    given = run(script, work / "b", "-d", "-c", "cred.pem")
    assert given.returncode == 0, given.stderr
    assert "--certificate=cred.pem" in given.stderr and "--private-key=cred.pem" in given.stderr


def test_update_rebuilds_the_script_only_when_the_answer_changed(
    tmp_path: Path, index_server: IndexServer
) -> None:
    served = tmp_path / "served"
    work = tmp_path / "work"
    with RangeFileServer(served) as fs:
        first, second = cmip6_samples(
            2, seed=11, data_node=f"127.0.0.1:{fs.port}", url_base=fs.base
        )
        assert index_server.publish(as_batch([first])).status_code == 200
        script = get_script(index_server, project="CMIP6")
        same = run(script, work, "-u")
        assert same.returncode == 0 and "No changes detected." in same.stdout, same.stderr
        assert (work / "wget.sh").read_text() == script and not list(work.glob("wget.sh.old.*"))
        assert index_server.publish(as_batch([second])).status_code == 200
        changed = run(script, work, "-u")
        assert changed.returncode == 0, changed.stderr
        assert (work / "wget.sh.old.0").read_text() == script
        new = (work / "wget.sh").read_text()
        for f in second.files:
            assert str(f["title"]) in new and str(f["title"]) not in script
        # when the index finds nothing any more, the script is kept
        with index_server.client() as c:
            ids = [str(first.dataset["id"]), str(second.dataset["id"])]
            r = c.post("/api/v1/delete", json={"ids": ids}, headers=index_server.auth())
        assert r.status_code == 200, r.text
        gone = run(new, work, "-u")
        assert gone.returncode == 1 and "No files were found" in gone.stderr
        assert (work / "wget.sh").read_text() == new and not (work / "wget.sh.old.1").exists()
        assert len(fs.requests) == 0


def test_update_works_for_a_script_asked_with_post(setup) -> None:
    server, _, samples, _, work = setup
    with server.client() as c:
        r = c.post("/esg-search/wget", data={"dataset_id": str(samples[0].dataset["id"])})
    assert r.status_code == 200
    assert "search_url='" in r.text and "dataset_id=" in r.text
    result = run(r.text, work, "-u")
    assert result.returncode == 0 and "No changes detected." in result.stdout, result.stderr


def test_search_url_cannot_break_out_of_its_quotes(tmp_path: Path) -> None:
    # a client may send raw quotes and newlines in the query string; the script embeds the URL
    hostile = "http://h/esg-search/wget?q=x'; touch pwned; echo '{{files}}\ntouch pwned2"
    files = [ScriptFile("a.nc", "http://127.0.0.1:9/a.nc", "SHA256", "00")]
    script = render_script(files, host="h", search_url=hostile, total=1, limit=10)
    result = run(script, tmp_path, "-n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "a.nc  <-  http://127.0.0.1:9/a.nc"
    assert not list(tmp_path.glob("pwned*"))
