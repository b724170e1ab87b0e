"""The Kubernetes deployment (deploy/kubernetes): every overlay renders with `kubectl
kustomize`, every rendered object validates against the Kubernetes 1.30 schemas, and the
rendered objects keep the project's policies (probes, resources, security context, disruption
budgets, network policies, references). The workloads themselves run under `podman kube play`
in test_kubernetes_play.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import dns.exception
import dns.message
import dns.query
import httpx
import kubernetes_validate
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from esgf_ha.cli.main import cli
from tests.kube_manifests import (
    KUBERNETES_DIR,
    LONG_RUNNING,
    OVERLAYS,
    VAR_REF,
    Obj,
    containers,
    matches,
    pod_labels,
    pod_spec,
    prepare_tree,
    render,
    workloads,
)
from tests.kube_play import PlayPlan

KUBERNETES_VERSION = "1.30"
MASTER_CLIENT = "esgf-ha/master-client"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_tree(tmp_path_factory.mktemp("kube"))


@pytest.fixture(scope="module")
def rendered(tree: Path) -> dict[str, list[Obj]]:
    return {name: render(tree / "overlays" / name) for name in OVERLAYS}


def all_objects(rendered: dict[str, list[Obj]]) -> Iterator[tuple[str, Obj]]:
    for overlay, objs in rendered.items():
        for obj in objs:
            yield overlay, obj


def where(overlay: str, obj: Obj, container: Obj | None = None) -> str:
    name = f"{overlay}: {obj['kind']}/{obj['metadata']['name']}"
    return f"{name} container {container['name']}" if container else name


def find(objs: list[Obj], kind: str, name: str) -> Obj:
    for obj in objs:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"no {kind}/{name} among {[o['metadata']['name'] for o in objs]}")


# -- rendering and schemas -------------------------------------------------------------------


def test_every_overlay_renders_the_expected_objects(rendered: dict[str, list[Obj]]) -> None:
    kinds = {name: {o["kind"] for o in objs} for name, objs in rendered.items()}
    assert {"Namespace", "StatefulSet", "Service", "Secret", "PodDisruptionBudget"} <= kinds[
        "master"
    ]
    assert {"Ingress", "NetworkPolicy"} <= kinds["master"]
    assert {
        "StatefulSet",
        "Deployment",
        "Job",
        "CronJob",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "Ingress",
        "NetworkPolicy",
        "PodDisruptionBudget",
    } <= kinds["site"]
    site_workloads = {(o["kind"], o["metadata"]["name"]) for o in workloads(rendered["site"])}
    assert site_workloads == {
        ("StatefulSet", "esgf-ha-index"),
        ("Deployment", "esgf-ha-data"),
        ("Deployment", "esgf-ha-replicator"),
        ("Deployment", "esgf-ha-dns"),
        ("Job", "esgf-ha-publish"),
        ("CronJob", "esgf-ha-publish-nightly"),
    }
    # each overlay lives in its own namespace, and every namespaced object is placed in it
    for overlay, objs in rendered.items():
        (namespace,) = [o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"]
        for obj in objs:
            if obj["kind"] != "Namespace":
                assert obj["metadata"].get("namespace") == namespace, where(overlay, obj)


def test_every_rendered_object_validates_against_the_kubernetes_schemas(
    rendered: dict[str, list[Obj]],
) -> None:
    errors = []
    count = 0
    for overlay, obj in all_objects(rendered):
        count += 1
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{where(overlay, obj)}: {str(exc).splitlines()[0]}")
    assert not errors, "\n".join(errors)
    assert count >= 40


def test_the_schema_check_rejects_what_the_api_server_would() -> None:
    """The validator is strict: an unknown field or a wrong type fails it."""
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "template": {}, "replica": 2},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_make_secrets_keeps_the_key_so_earlier_tokens_stay_valid(
    tree: Path, rendered: dict[str, list[Obj]]
) -> None:
    from esgf_ha.common.auth import InsufficientScope, TokenVerifier

    master, site = tree / "overlays" / "master", tree / "overlays" / "site"
    key = (master / "secrets" / "token-signing.pem").read_bytes()
    earlier = (site / "secrets" / "replicate.jwt").read_text()
    subprocess.run(
        ["sh", str(tree / "make-secrets.sh"), str(master), str(site)],
        env=dict(os.environ, ESGF_HA=f"{sys.executable} -m esgf_ha"),
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert (master / "secrets" / "token-signing.pem").read_bytes() == key
    later = (site / "secrets" / "replicate.jwt").read_text()
    assert later != earlier
    public = serialization.load_pem_public_key(
        (site / "secrets" / "token-signing.pub.pem").read_bytes()
    )
    assert isinstance(public, Ed25519PublicKey)
    verifier = TokenVerifier([public])
    for token in (earlier, later):
        assert verifier.verify(f"Bearer {token}", "esgf:replicate").subject == "replica-site"
    with pytest.raises(InsufficientScope):
        verifier.verify(f"Bearer {later}", "esgf:publish")
    # the key stays private to whoever runs the script
    assert (master / "secrets" / "token-signing.pem").stat().st_mode & 0o077 == 0


# -- every container --------------------------------------------------------------------------


def test_every_container_runs_locked_down(rendered: dict[str, list[Obj]]) -> None:
    for overlay, obj in all_objects(rendered):
        if obj["kind"] not in ("Deployment", "StatefulSet", "Job", "CronJob"):
            continue
        spec = pod_spec(obj)
        pod_ctx = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, where(overlay, obj)
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), where(overlay, obj)
        for c in containers(spec):
            at = where(overlay, obj, c)
            ctx = c.get("securityContext", {})
            assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, at
            # a numeric user, so the kubelet can check runAsNonRoot before starting the image
            assert int(ctx.get("runAsUser", pod_ctx.get("runAsUser", 0))) > 0, at
            assert ctx.get("readOnlyRootFilesystem") is True, at
            assert ctx.get("allowPrivilegeEscalation") is False, at
            assert not ctx.get("privileged"), at
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], at
            assert not ctx.get("capabilities", {}).get("add"), at
            seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", at
            # scratch space: a writable emptyDir at /tmp, TMPDIR pointing at it
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1 and not tmp[0].get("readOnly"), at
            assert "emptyDir" in volumes[tmp[0]["name"]], at
            assert {"name": "TMPDIR", "value": "/tmp"} in c.get("env", []), at
            assert c["image"].startswith("localhost/esgf-ha:"), at
            assert c.get("command") is None, f"{at}: the image's ENTRYPOINT is esgf-ha"


def _quantity(value: str | int) -> float:
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def test_every_container_requests_and_limits_cpu_and_memory(
    rendered: dict[str, list[Obj]],
) -> None:
    for overlay, obj in all_objects(rendered):
        if obj["kind"] not in ("Deployment", "StatefulSet", "Job", "CronJob"):
            continue
        for c in containers(pod_spec(obj)):
            at = where(overlay, obj, c)
            res = c.get("resources", {})
            for resource in ("cpu", "memory"):
                request = res.get("requests", {}).get(resource)
                limit = res.get("limits", {}).get(resource)
                assert request is not None and limit is not None, f"{at}: {resource}"
                assert 0 < _quantity(request) <= _quantity(limit), f"{at}: {resource}"
    # the index is sized for the production-scale figures of docs/benchmarks.md (4.5 GB the
    # highest sampled at 9 M datasets): the limit must hold it
    for overlay in OVERLAYS:
        index = find(rendered[overlay], "StatefulSet", "esgf-ha-index")
        limits = pod_spec(index)["containers"][0]["resources"]["limits"]
        assert _quantity(limits["memory"]) >= 4.5e9, overlay


def test_every_container_resource_block_names_its_benchmark_figure() -> None:
    """Requests and limits come from docs/benchmarks.md, and the manifest says which figure
    (or that there is none for that service)."""
    blocks = 0
    for path in sorted(KUBERNETES_DIR.rglob("*.yaml")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() != "resources:":
                continue
            indent = len(line) - len(line.lstrip())
            body = []
            for following in lines[i + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                body.append(following.strip())
            if not any(b.startswith("cpu:") for b in body):
                continue  # a volume claim's storage
            comment = " ".join(b for b in body if b.startswith("#"))
            assert "docs/benchmarks.md" in comment, f"{path.name}:{i + 1}"
            blocks += 1
    assert blocks >= 6


def test_long_running_containers_have_probes_on_their_health_endpoints(
    rendered: dict[str, list[Obj]],
) -> None:
    for overlay, obj in all_objects(rendered):
        if obj["kind"] not in LONG_RUNNING:
            continue
        for c in containers(pod_spec(obj)):
            at = where(overlay, obj, c)
            port_names = {p["name"] for p in c.get("ports", []) if "name" in p}
            assert "startupProbe" in c and "livenessProbe" in c, at
            if not port_names:
                # no HTTP side (the replicator): an exec probe on its own state
                assert "exec" in c["livenessProbe"], at
                assert "readinessProbe" not in c, at
                continue
            assert c["startupProbe"]["httpGet"]["path"] == "/livez", at
            assert c["livenessProbe"]["httpGet"]["path"] == "/livez", at
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", at
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert c[kind]["httpGet"]["port"] in port_names, f"{at}: {kind}"
            # liveness must not be stricter than readiness, or a slow pod is killed
            # before it is merely taken out of rotation
            live, ready = c["livenessProbe"], c["readinessProbe"]
            assert live["periodSeconds"] * live["failureThreshold"] > (
                ready["periodSeconds"] * ready["failureThreshold"]
            ), at


def test_replica_readiness_is_lag_aware(rendered: dict[str, list[Obj]]) -> None:
    index = find(rendered["site"], "StatefulSet", "esgf-ha-index")
    (c,) = pod_spec(index)["containers"]
    assert "--role=replica" in c["args"]
    assert any(a.startswith("--max-lag=") for a in c["args"])
    assert any(a.startswith("--upstream=") for a in c["args"])
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    master = find(rendered["master"], "StatefulSet", "esgf-ha-index")
    assert "--role=master" in pod_spec(master)["containers"][0]["args"]


def _command_for(args: list[str]) -> tuple[str, click.Command, list[str]]:
    """The esgf-ha subcommand ARGS run, and the arguments left for it."""
    command: click.Command = cli
    path = []
    rest = list(args)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(click.Context(command), rest[0])
        assert sub is not None, f"esgf-ha has no command {' '.join(path + [rest[0]])}"
        path.append(rest.pop(0))
        command = sub
    return " ".join(path), command, rest


def test_every_container_passes_only_options_its_command_has(
    rendered: dict[str, list[Obj]],
) -> None:
    """Flags, not ESGF_HA_* variables, configure the services: each one must exist, and each
    $(VAR) in the arguments must be defined for the kubelet to expand."""
    seen = set()
    for overlay, obj in all_objects(rendered):
        if obj["kind"] not in ("Deployment", "StatefulSet", "Job", "CronJob"):
            continue
        for c in containers(pod_spec(obj)):
            at = where(overlay, obj, c)
            name, command, rest = _command_for(c["args"])
            seen.add(name)
            options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
            for arg in rest:
                if arg.startswith("--"):
                    flag = arg.split("=", 1)[0]
                    assert flag in options, f"{at}: esgf-ha {name} has no option {flag}"
            defined = {e["name"] for e in c.get("env", [])}
            for arg in c["args"]:
                for var in VAR_REF.findall(arg):
                    assert var in defined, f"{at}: $({var}) is not in the container's env"
            assert not any(e["name"].startswith("ESGF_HA_") for e in c.get("env", [])), at
            for probe in ("startupProbe", "livenessProbe"):
                exec_cmd = c.get(probe, {}).get("exec", {}).get("command")
                if exec_cmd:
                    assert exec_cmd[0] == "esgf-ha", at
                    _command_for(exec_cmd[1:])
    assert seen == {"serve index", "serve data", "serve dns", "replicate", "publish"}


# -- data roots, budgets, spreading, autoscaling ------------------------------------------------


def _mounts(obj: Obj, volume: str) -> list[Obj]:
    spec = pod_spec(obj)
    return [m for c in containers(spec) for m in c.get("volumeMounts", []) if m["name"] == volume]


def test_data_root_is_read_only_except_for_the_replicator(rendered: dict[str, list[Obj]]) -> None:
    site = rendered["site"]
    for kind, name in [
        ("Deployment", "esgf-ha-data"),
        ("Job", "esgf-ha-publish"),
        ("CronJob", "esgf-ha-publish-nightly"),
    ]:
        obj = find(site, kind, name)
        (mount,) = _mounts(obj, "data-root")
        assert mount["readOnly"] is True, name
        (volume,) = [v for v in pod_spec(obj)["volumes"] if v["name"] == "data-root"]
        assert volume["persistentVolumeClaim"]["readOnly"] is True, name
    replicator = find(site, "Deployment", "esgf-ha-replicator")
    (mount,) = _mounts(replicator, "data-root")
    assert not mount.get("readOnly")
    # the replicator's queue is one SQLite file: never two pods at once
    assert replicator["spec"]["replicas"] == 1
    assert replicator["spec"]["strategy"]["type"] == "Recreate"
    claims = {o["metadata"]["name"]: o for o in site if o["kind"] == "PersistentVolumeClaim"}
    assert claims["esgf-data"]["spec"]["accessModes"] == ["ReadWriteMany"]


def test_serving_workloads_have_disruption_budgets_and_spread(
    rendered: dict[str, list[Obj]],
) -> None:
    for overlay, objs in rendered.items():
        budgets = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
        for obj in objs:
            if obj["kind"] not in LONG_RUNNING:
                continue
            spec = pod_spec(obj)
            if not any(c.get("ports") for c in spec["containers"]):
                continue
            at = where(overlay, obj)
            covering = [b for b in budgets if matches(b["spec"]["selector"], pod_labels(obj))]
            assert len(covering) == 1, f"{at}: {len(covering)} budgets"
            (budget,) = covering
            replicas = obj["spec"].get("replicas", 1)
            if replicas > 1:
                # a drain may never take every serving pod at once
                assert budget["spec"].get("minAvailable", 0) >= 1 or (
                    budget["spec"].get("maxUnavailable", replicas) < replicas
                ), at
            spread = spec.get("topologySpreadConstraints", [])
            anti = spec.get("affinity", {}).get("podAntiAffinity")
            assert spread or anti, f"{at}: neither topology spread nor anti-affinity"
            for constraint in spread:
                assert matches(constraint["labelSelector"], pod_labels(obj)), at


def test_replica_search_scales_with_an_autoscaler(rendered: dict[str, list[Obj]]) -> None:
    site = rendered["site"]
    (hpa,) = [o for o in site if o["kind"] == "HorizontalPodAutoscaler"]
    target = hpa["spec"]["scaleTargetRef"]
    index = find(site, target["kind"], target["name"])
    assert index["kind"] == "StatefulSet"
    assert "--role=replica" in pod_spec(index)["containers"][0]["args"]
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    # each pod has a store of its own, which a new replica fills from the master's snapshot
    assert [t["metadata"]["name"] for t in index["spec"]["volumeClaimTemplates"]] == ["state"]
    cpu = pod_spec(index)["containers"][0]["resources"]["requests"]["cpu"]
    assert cpu, "utilization targets need a CPU request"
    assert not [o for o in rendered["master"] if o["kind"] == "HorizontalPodAutoscaler"]


# -- references ------------------------------------------------------------------------------


def _data_keys(obj: Obj) -> set[str]:
    return (
        set(obj.get("data", {})) | set(obj.get("binaryData", {})) | set(obj.get("stringData", {}))
    )


def test_every_referenced_secret_and_config_map_exists(rendered: dict[str, list[Obj]]) -> None:
    for overlay, objs in rendered.items():
        have = {
            kind: {o["metadata"]["name"]: _data_keys(o) for o in objs if o["kind"] == kind}
            for kind in ("Secret", "ConfigMap")
        }
        used: set[tuple[str, str]] = set()

        def need(kind: str, name: str, key: str | None, at: str) -> None:
            assert name in have[kind], f"{at}: {kind} {name} is not rendered"  # noqa: B023
            if key is not None:
                assert key in have[kind][name], f"{at}: {kind} {name} has no key {key}"  # noqa: B023
            used.add((kind, name))  # noqa: B023

        for obj in objs:
            if obj["kind"] not in ("Deployment", "StatefulSet", "Job", "CronJob"):
                continue
            spec = pod_spec(obj)
            at = where(overlay, obj)
            for v in spec.get("volumes", []):
                if "secret" in v:
                    need("Secret", v["secret"]["secretName"], None, at)
                if "configMap" in v:
                    need("ConfigMap", v["configMap"]["name"], None, at)
            for c in containers(spec):
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {})
                    if "secretKeyRef" in ref:
                        need("Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"], at)
                    if "configMapKeyRef" in ref:
                        r = ref["configMapKeyRef"]
                        need("ConfigMap", r["name"], r["key"], at)
                for e in c.get("envFrom", []):
                    if "secretRef" in e:
                        need("Secret", e["secretRef"]["name"], None, at)
                    if "configMapRef" in e:
                        need("ConfigMap", e["configMapRef"]["name"], None, at)
                # a file a container is told to read must be a key of the mounted object
                mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                volumes = {v["name"]: v for v in spec.get("volumes", [])}
                for arg in c["args"]:
                    value = arg.split("=")[-1]
                    directory, _, filename = value.rpartition("/")
                    if directory in mounts and directory.startswith("/etc/"):
                        volume = volumes[mounts[directory]]
                        if "secret" in volume:
                            keys = have["Secret"][volume["secret"]["secretName"]]
                        else:
                            keys = have["ConfigMap"][volume["configMap"]["name"]]
                        assert filename in keys, f"{at}: {arg} names no key of its volume"
        # nothing generated goes unused (a renamed reference would leave one behind)
        generated = {(k, n) for k in have for n in have[k]}
        assert generated <= used, f"{overlay}: unused {sorted(generated - used)}"


def test_secret_values_passed_as_arguments_are_single_tokens(
    rendered: dict[str, list[Obj]],
) -> None:
    """A Secret value that reaches an argument (the publisher's --token) keeps no newline or
    space: it would end up inside an HTTP header."""
    checked = 0
    for overlay, obj in all_objects(rendered):
        if obj["kind"] not in ("Deployment", "StatefulSet", "Job", "CronJob"):
            continue
        secrets = {o["metadata"]["name"]: o for o in rendered[overlay] if o["kind"] == "Secret"}
        for c in containers(pod_spec(obj)):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref is None:
                    continue
                value = base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode()
                assert value and value == value.strip() and " " not in value, where(overlay, obj)
                checked += 1
    assert checked >= 2


def test_services_and_ingresses_reach_pods(rendered: dict[str, list[Obj]]) -> None:
    for overlay, objs in rendered.items():
        pods = [o for o in objs if o["kind"] in LONG_RUNNING]
        services = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
        for svc in services.values():
            at = where(overlay, svc)
            targets = [
                p for p in pods if matches({"matchLabels": svc["spec"]["selector"]}, pod_labels(p))
            ]
            assert targets, f"{at}: selects no pod"
            for port in svc["spec"]["ports"]:
                for p in targets:
                    named = {
                        (cp.get("name"), cp.get("protocol", "TCP"))
                        for c in pod_spec(p)["containers"]
                        for cp in c.get("ports", [])
                    }
                    assert (port["targetPort"], port.get("protocol", "TCP")) in named, at
        for ing in (o for o in objs if o["kind"] == "Ingress"):
            for rule in ing["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    backend = path["backend"]["service"]
                    svc = services.get(backend["name"])
                    assert svc is not None, f"{where(overlay, ing)}: {backend['name']}"
                    assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}


def test_ingresses_publish_no_write_endpoint_to_everyone(rendered: dict[str, list[Obj]]) -> None:
    writes = ("/api/v1", "/esg-search/ws")
    for overlay, obj in all_objects(rendered):
        if obj["kind"] != "Ingress":
            continue
        paths = [p["path"] for r in obj["spec"]["rules"] for p in r["http"]["paths"]]
        if any(p.startswith(writes) or p == "/" for p in paths):
            # only the master's API Ingress, and only for the sites' addresses
            assert overlay == "master", where(overlay, obj)
            ranges = obj["metadata"]["annotations"][
                "nginx.ingress.kubernetes.io/whitelist-source-range"
            ]
            assert ranges and "0.0.0.0/0" not in ranges, where(overlay, obj)


# -- network policies --------------------------------------------------------------------------


def _allowing(objs: list[Obj], labels: dict[str, str]) -> list[Obj]:
    return [
        o
        for o in objs
        if o["kind"] == "NetworkPolicy"
        and matches(o["spec"]["podSelector"], labels)
        and o["spec"].get("ingress")
    ]


def test_every_namespace_denies_incoming_traffic_by_default(
    rendered: dict[str, list[Obj]],
) -> None:
    for overlay, objs in rendered.items():
        deny = [
            o
            for o in objs
            if o["kind"] == "NetworkPolicy"
            and o["spec"]["podSelector"] == {}
            and "Ingress" in o["spec"]["policyTypes"]
            and not o["spec"].get("ingress")
        ]
        assert len(deny) == 1, overlay


def test_network_policies_open_only_the_ports_pods_serve(rendered: dict[str, list[Obj]]) -> None:
    for overlay, objs in rendered.items():
        for obj in workloads(objs):
            labels = pod_labels(obj)
            served = {cp["name"] for c in containers(pod_spec(obj)) for cp in c.get("ports", [])}
            allowed = {
                port["port"]
                for policy in _allowing(objs, labels)
                for rule in policy["spec"]["ingress"]
                for port in rule.get("ports", [])
            }
            at = where(overlay, obj)
            # every rule names its ports: no policy opens a pod wholesale
            for policy in _allowing(objs, labels):
                assert all(rule.get("ports") for rule in policy["spec"]["ingress"]), at
            assert allowed == served, f"{at}: open {sorted(allowed)}, served {sorted(served)}"


def test_the_master_is_reachable_only_by_the_pods_that_need_it(
    rendered: dict[str, list[Obj]],
) -> None:
    master = rendered["master"]
    index = find(master, "StatefulSet", "esgf-ha-index")
    (policy,) = _allowing(master, pod_labels(index))
    for rule in policy["spec"]["ingress"]:
        for peer in rule["from"]:
            if "podSelector" in peer:
                # pods elsewhere need the label that marks a client of the master
                assert peer["podSelector"] == {"matchLabels": {MASTER_CLIENT: "true"}}
            else:
                # the ingress controller, whose Ingress publishes the search paths only
                assert peer["namespaceSelector"]["matchLabels"] == {
                    "kubernetes.io/metadata.name": "ingress-nginx"
                }
    # at the site, exactly the workloads that talk to the master carry that label
    for obj in workloads(rendered["site"]):
        args = [a for c in containers(pod_spec(obj)) for a in c["args"]]
        talks_to_master = any("$(MASTER_URL)" in a for a in args)
        labelled = pod_labels(obj).get(MASTER_CLIENT) == "true"
        assert talks_to_master == labelled, where("site", obj)


def test_a_site_joins_the_federation_config_it_carries(
    rendered: dict[str, list[Obj]], tmp_path: Path
) -> None:
    """The balancer's ConfigMap holds a federation config the services accept, naming this
    site, and the DNS container listens where the config says."""
    from esgf_ha.federation.config import load_config

    site = rendered["site"]
    (federation,) = [
        o for o in site if o["kind"] == "ConfigMap" and "federation.yaml" in o.get("data", {})
    ]
    path = tmp_path / "federation.yaml"
    path.write_text(federation["data"]["federation.yaml"])
    config = load_config(path)
    (settings,) = [o for o in site if o["kind"] == "ConfigMap" and "SITE_NAME" in o.get("data", {})]
    assert settings["data"]["SITE_NAME"] in {s.name for s in config.sites}
    balancer = find(site, "Deployment", "esgf-ha-dns")
    ports = {p["containerPort"] for p in pod_spec(balancer)["containers"][0]["ports"]}
    assert {config.dns.port, config.dns.http_port} == ports
    # an unprivileged port: the container has no capability to bind below 1024
    assert config.dns.port >= 1024


# -- podman kube play: a master and one site ---------------------------------------------------

IMAGE = "localhost/esgf-ha:dev"
PREFIX = "esgfkt"
MASTER_IP = "127.0.15.1"
SITE_IP = "127.0.15.2"
DNS_IP = "127.0.15.3"
ZONE = "esgf.example.org."


class Podman:
    """The podman CLI with the project's containers.conf, and what the test made with it."""

    def __init__(self) -> None:
        conf = KUBERNETES_DIR.parent / "container" / "containers.conf"
        self.env = dict(os.environ)
        if conf.exists():
            self.env["CONTAINERS_CONF"] = str(conf)

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def leftovers(self) -> dict[str, set[str]]:
        return {
            "pods": {
                n
                for n in self("pod", "ls", "--format", "{{.Name}}").stdout.split()
                if n.startswith(PREFIX)
            },
            "containers": {
                n
                for n in self("ps", "-a", "--format", "{{.Names}}").stdout.split()
                if n.startswith(PREFIX)
            },
            "volumes": {
                n
                for n in self("volume", "ls", "--format", "{{.Name}}").stdout.split()
                if n.startswith(PREFIX)
            },
            "networks": {
                n
                for n in self("network", "ls", "--format", "{{.Name}}").stdout.split()
                if n.startswith(PREFIX)
            },
        }

    def remove_leftovers(self) -> None:
        """Remove what a run of this test that was killed midway left (all named PREFIX-…)."""
        left = self.leftovers()
        for pod in left["pods"]:
            self("pod", "rm", "--force", pod, check=False)
        for container in left["containers"]:
            self("rm", "--force", container, check=False)
        for volume in left["volumes"]:
            self("volume", "rm", "--force", volume, check=False)
        for network in left["networks"]:
            self("network", "rm", "--force", network, check=False)


def _wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, dns.exception.Timeout, ConnectionError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _ready(url: str) -> bool:
    return httpx.get(url + "/readyz", timeout=3).status_code == 200


def _data_volume_tar(tmp: Path, owner: int) -> Path:
    """Sample netCDF files in the DRS tree, as a tar owned by the pods' fsGroup."""
    root = tmp / "data"
    subprocess.run(
        [sys.executable, "-m", "esgf_ha", "sample-data", str(root), "--project", "CMIP6",
         "--datasets", "2", "--files-per-version", "1"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    tar = tmp / "data.tar"

    def own(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = owner
        info.uname = info.gname = ""
        return info

    with tarfile.open(tar, "w") as out:
        for child in sorted(root.iterdir()):
            out.add(child, arcname=child.name, filter=own)
    return tar


def _write(path: str) -> list[str]:
    """A command that writes PATH inside a container (the image has Python, no shell)."""
    return ["python3", "-I", "-c", f"open({path!r}, 'w').write('x')"]


def _check_probes(podman: Podman, pod: Obj, workload: Obj, host_ip: str) -> int:
    """Run every probe of POD's containers the way the kubelet would; return how many."""
    count = 0
    for c, rendered in zip(
        pod["spec"]["containers"], pod_spec(workload)["containers"], strict=True
    ):
        ports = {p["name"]: p["containerPort"] for p in rendered.get("ports", [])}
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = c.get(kind)
            if probe is None:
                continue
            count += 1
            at = f"{pod['metadata']['name']}/{c['name']} {kind}"
            if "httpGet" in probe:
                port = probe["httpGet"]["port"]
                port = ports[port] if isinstance(port, str) else port
                r = httpx.get(
                    f"http://{host_ip}:{port}{probe['httpGet']['path']}",
                    timeout=probe.get("timeoutSeconds", 1),
                )
                assert 200 <= r.status_code < 400, f"{at}: {r.status_code} {r.text}"
            else:
                container = f"{pod['metadata']['name']}-{c['name']}"
                done = podman("exec", container, *probe["exec"]["command"], check=False)
                assert done.returncode == 0, f"{at}: {done.stdout}{done.stderr}"
    return count


@pytest.mark.containers
@pytest.mark.timeout(1800)
def test_master_and_site_workloads_play_in_podman(tmp_path: Path) -> None:
    podman = Podman()
    if (
        shutil.which("podman") is None
        or podman("image", "exists", IMAGE, check=False).returncode != 0
    ):
        # what `make image` runs (it installs podman when missing); an image already built
        # is used as it is: `make image` after changing the sources
        built = subprocess.run(
            [str(KUBERNETES_DIR.parent / "container" / "build-image.sh"), IMAGE],
            env=podman.env, capture_output=True, text=True, timeout=1500,
        )  # fmt: skip
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    podman.remove_leftovers()

    tree = prepare_tree(tmp_path)
    site_dir = tree / "overlays" / "site"
    # this machine's loopback addresses stand for the site's and the balancer's public ones
    federation = yaml.safe_load((site_dir / "federation.yaml").read_text())
    federation["master"]["address"] = MASTER_IP
    federation["sites"] = [federation["sites"][0] | {"address": SITE_IP}]
    federation["dns"]["address"] = DNS_IP
    (site_dir / "federation.yaml").write_text(yaml.safe_dump(federation))
    env = (site_dir / "site.env").read_text()
    env = re.sub(r"(?m)^DATA_NODE=.*$", f"DATA_NODE={SITE_IP}:8081", env)
    env = re.sub(r"(?m)^DATA_NODE_URL=.*$", f"DATA_NODE_URL=http://{SITE_IP}:8081", env)
    (site_dir / "site.env").write_text(env)
    rendered = {name: render(tree / "overlays" / name) for name in OVERLAYS}

    plan = PlayPlan(rendered, PREFIX, tmp_path / "secrets")
    site = rendered["site"]
    workloads_played = {
        "master": find(rendered["master"], "StatefulSet", "esgf-ha-index"),
        "index": find(site, "StatefulSet", "esgf-ha-index"),
        "data": find(site, "Deployment", "esgf-ha-data"),
        "replicator": find(site, "Deployment", "esgf-ha-replicator"),
        "balancer": find(site, "Deployment", "esgf-ha-dns"),
    }
    master = plan.pod("master", workloads_played["master"], MASTER_IP)
    index = plan.pod("site", workloads_played["index"], SITE_IP)
    data = plan.pod("site", workloads_played["data"], SITE_IP)
    replicator = plan.pod("site", workloads_played["replicator"], None)
    # the balancer health-checks the sites' public addresses, which are the host's loopback
    # here: it runs in the host's network, listening where federation.yaml says
    balancer = plan.pod("site", workloads_played["balancer"], None, host_network=True)
    publisher = plan.pod("site", find(site, "Job", "esgf-ha-publish"), None)
    data_claim = f"{PREFIX}-site-esgf-data"
    network = f"{PREFIX}-net"
    files: list[Path] = []

    def play(name: str, *objs: Obj, on_network: bool = True) -> None:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all([*plan.config_maps, *objs]))
        files.append(path)
        # --network would override the balancer's hostNetwork
        where = ["--network", network] if on_network else []
        done = podman("kube", "play", *where, str(path), check=False)
        assert done.returncode == 0, done.stderr

    try:
        podman("network", "create", network)
        for claim, owner in plan.claims.items():
            podman("volume", "create", "--opt", f"o=uid={owner},gid={owner}", claim)
        podman("volume", "import", data_claim, str(_data_volume_tar(tmp_path, 10001)))

        play("master", master)
        master_url = f"http://{MASTER_IP}:8080"
        _wait_for("the master to be ready", lambda: _ready(master_url), 60)

        play("site", index, data, replicator)
        play("balancer", balancer, on_network=False)
        site_url, data_url = f"http://{SITE_IP}:8080", f"http://{SITE_IP}:8081"
        # the replica copies the master's snapshot, then reports ready
        _wait_for("the site's replica to be ready", lambda: _ready(site_url), 90)
        _wait_for("the data node to be ready", lambda: _ready(data_url), 60)

        def run_publisher(name: str) -> dict[str, Any]:
            play(name, publisher)
            job = f"{publisher['metadata']['name']}-publish"
            waited = podman("wait", job, timeout=300)
            logs = podman("logs", job)
            assert waited.stdout.strip() == "0", logs.stdout + logs.stderr
            podman("kube", "down", str(files[-1]), timeout=180)
            summary: dict[str, Any] = json.loads(logs.stdout)
            return summary

        first = run_publisher("publish")
        assert len(first["published"]) == first["datasets"] >= 2 and not first["failed"]
        seq = httpx.get(f"{master_url}/readyz").json()["seq"]
        # the Job run again (a retry, the next CronJob run) publishes nothing twice
        again = run_publisher("publish-again")
        assert again["published"] == [] and len(again["unchanged"]) == first["datasets"]
        assert httpx.get(f"{master_url}/readyz").json()["seq"] == seq

        params = {"type": "Dataset", "format": "application/solr+json", "limit": 100}
        on_master = httpx.get(f"{master_url}/esg-search/search", params=params).json()
        assert on_master["response"]["numFound"] >= 2

        def replicated() -> bool:
            r = httpx.get(f"{site_url}/esg-search/search", params=params, timeout=5).json()
            return bool(r["response"]["numFound"] == on_master["response"]["numFound"])

        _wait_for("the publication to reach the site's replica", replicated, 30)

        # a download through the data node's pod port, checked against the record
        files_found = httpx.get(
            f"{site_url}/esg-search/search",
            params={"type": "File", "format": "application/solr+json", "limit": 1},
        ).json()["response"]["docs"]
        (record,) = files_found
        url = next(u.split("|")[0] for u in record["url"] if u.endswith("|HTTPServer"))
        path = "/thredds/" + url.split("/thredds/", 1)[1]
        body = httpx.get(data_url + path, timeout=30)
        assert body.status_code == 200
        checksum = (
            record["checksum"][0] if isinstance(record["checksum"], list) else record["checksum"]
        )
        assert hashlib.sha256(body.content).hexdigest() == checksum

        # the balancer answers the federation's search name with the healthy site
        def answered() -> bool:
            query = dns.message.make_query("search." + ZONE, "A")
            reply = dns.query.udp(query, DNS_IP, port=5353, timeout=2)
            return [r.to_text() for rr in reply.answer for r in rr] == [SITE_IP]

        _wait_for("the balancer to answer with the site", answered, 30)

        # every probe of every long-running pod passes where the kubelet would run it
        probes = sum(
            _check_probes(podman, pod, workloads_played[key], ip)
            for key, pod, ip in [("master", master, MASTER_IP), ("index", index, SITE_IP),
                                 ("data", data, SITE_IP), ("balancer", balancer, DNS_IP),
                                 ("replicator", replicator, "")]
        )  # fmt: skip
        assert probes == 14

        # the containers run as rendered: non-root, read-only root, no capabilities
        for pod in (master, index, data, replicator, balancer):
            for c in pod["spec"]["containers"]:
                name = f"{pod['metadata']['name']}-{c['name']}"
                (info,) = json.loads(podman("container", "inspect", name).stdout)
                assert info["State"]["Running"], name
                assert info["HostConfig"]["ReadonlyRootfs"] is True, name
                assert info["Config"]["User"].split(":")[0] == "10001", name
                assert info["EffectiveCaps"] in (None, []), name
                wrote = podman("exec", name, *_write("/opt/x"), check=False)
                assert wrote.returncode != 0, f"{name}: wrote to its root file system"
                scratch = podman("exec", name, *_write("/tmp/x"), check=False)
                assert scratch.returncode == 0, f"{name}: no writable scratch: {scratch.stderr}"
        # the data node sees the data root read-only; the replicator may write it
        data_node = f"{data['metadata']['name']}-data"
        assert podman("exec", data_node, *_write("/esg/data/x"), check=False).returncode != 0
        copier = f"{replicator['metadata']['name']}-replicator"
        assert podman("exec", copier, *_write("/esg/data/x"), check=False).returncode == 0
    except AssertionError as exc:
        # what the services said is what explains a failure here
        logs = []
        for pod in (master, index, data, replicator, balancer, publisher):
            for c in pod["spec"]["containers"]:
                name = f"{pod['metadata']['name']}-{c['name']}"
                out = podman("logs", "--tail", "15", name, check=False)
                logs.append(f"--- {name}\n{out.stdout}{out.stderr}")
        raise AssertionError(f"{exc}\n" + "\n".join(logs)) from exc
    finally:
        for path in reversed(files):
            podman("kube", "down", str(path), check=False, timeout=180)
        for claim in [*plan.claims, *(c["metadata"]["name"] for c in plan.config_maps)]:
            podman("volume", "rm", "--force", claim, check=False)
        podman("network", "rm", "--force", network, check=False)
    assert podman.leftovers() == {
        "pods": set(),
        "containers": set(),
        "volumes": set(),
        "networks": set(),
    }
    volumes = set(podman("volume", "ls", "--format", "{{.Name}}").stdout.split())
    assert not volumes & {c["metadata"]["name"] for c in plan.config_maps}
