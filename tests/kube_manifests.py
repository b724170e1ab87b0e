"""Rendering the Kustomize overlays of deploy/kubernetes and reading the rendered objects.

The overlays' secretGenerators read files an operator makes with make-secrets.sh; tests copy
the tree to a temporary directory and make them there with this checkout's `esgf-ha`, so the
checkout never holds a key.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

KUBERNETES_DIR = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
OVERLAYS = ("master", "site")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob")
# kinds whose pods run until stopped, as opposed to the publisher's run-to-completion pods
LONG_RUNNING = ("Deployment", "StatefulSet")

Obj = dict[str, Any]


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        raise RuntimeError(
            "kubectl is not installed: the Kustomize overlays are rendered with "
            "`kubectl kustomize` (the project's machine image ships it; elsewhere install "
            "kubectl 1.30 or later from the Kubernetes package repositories)"
        )
    return found


def prepare_tree(dest: Path) -> Path:
    """Copy deploy/kubernetes to DEST and make the overlays' secret files there."""
    tree = dest / "kubernetes"
    shutil.copytree(KUBERNETES_DIR, tree, ignore=shutil.ignore_patterns("*.jwt", "*.pem"))
    env = dict(os.environ, ESGF_HA=f"{sys.executable} -m esgf_ha")
    subprocess.run(
        ["sh", str(tree / "make-secrets.sh"), "--ttl", "86400"]
        + [str(tree / "overlays" / name) for name in OVERLAYS],
        check=True,
        env=env,
        capture_output=True,
        timeout=120,
    )
    return tree


def render(overlay_dir: Path) -> list[Obj]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(overlay_dir)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def pod_spec(obj: Obj) -> Obj:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def pod_labels(obj: Obj) -> dict[str, str]:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {})
    return obj["spec"]["template"]["metadata"].get("labels", {})


def workloads(objs: list[Obj]) -> Iterator[Obj]:
    return (o for o in objs if o["kind"] in WORKLOAD_KINDS)


def containers(spec: Obj) -> list[Obj]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def matches(selector: Obj, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a set of labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion in command and args (unknown names stay as written)."""
    return VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), text)
