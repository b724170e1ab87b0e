#!/usr/bin/env bash
# Create one isolated virtual environment per third-party ESGF client.
#
#   bash tests/clients/setup_client_venvs.sh [ROOT_DIR] [CLIENT ...]
#
# For every tests/clients/requirements/<client>.txt (or only the CLIENTs named),
# ROOT_DIR/.venv-clients/<client> is (re)built with `python -m venv` + plain
# `pip install -r` when it is missing, broken, or was built from a different
# requirements file or interpreter. A stamp file inside the venv records the
# sha256 of the requirements file and the interpreter version; it is written only
# after a successful install, so an interrupted build is redone next time.
#
# ROOT_DIR defaults to the repository root. Environment:
#   PYTHON           interpreter to build with (default: python3.11, else python3)
#   PIP_INSTALL_ARGS extra arguments for pip install (e.g. "--no-cache-dir")
# Exit status: 0 when every requested venv is ready, 1 otherwise.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${1:-$(cd "$here/../.." && pwd)}"
[ $# -gt 0 ] && shift
reqdir="$here/requirements"
venvs="$root/.venv-clients"
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
mkdir -p "$venvs"

if [ $# -gt 0 ]; then
    clients=("$@")
else
    clients=()
    for f in "$reqdir"/*.txt; do
        clients+=("$(basename "$f" .txt)")
    done
fi

# One builder at a time (parallel `make test` / pytest-xdist workers).
exec 9>"$venvs/.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

pyver="$("$python" -c 'import sys; print(sys.version.split()[0])')"
status=0
for name in "${clients[@]}"; do
    req="$reqdir/$name.txt"
    venv="$venvs/$name"
    stamp="$venv/.requirements.stamp"
    if [ ! -f "$req" ]; then
        echo "setup_client_venvs: no requirements file $req" >&2
        status=1
        continue
    fi
    want="$(sha256sum "$req" | cut -d' ' -f1) python-$pyver"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && "$venv/bin/python" -c 'pass' >/dev/null 2>&1; then
        echo "setup_client_venvs: $name up to date ($venv)"
        continue
    fi
    echo "setup_client_venvs: building $name in $venv ..."
    start=$SECONDS
    rm -rf "$venv"
    log="$venvs/$name.install.log"
    if "$python" -m venv "$venv" >"$log" 2>&1 \
        && "$venv/bin/python" -m pip install --disable-pip-version-check \
            ${PIP_INSTALL_ARGS:-} -r "$req" >>"$log" 2>&1; then
        echo "$want" >"$stamp"
        echo "setup_client_venvs: $name ready in $((SECONDS - start))s"
    else
        echo "setup_client_venvs: $name FAILED after $((SECONDS - start))s; last lines of $log:" >&2
        grep -v '^WARNING: Location' "$log" | tail -n 20 >&2 || true
        rm -rf "$venv"
        status=1
    fi
done
exit $status
