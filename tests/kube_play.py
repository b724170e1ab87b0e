"""Playing the rendered Kubernetes workloads with `podman kube play`.

Podman plays Pods (and Deployments), not StatefulSets, Jobs or CronJobs, so each workload's pod
template becomes a Pod with the same containers, arguments, probes, volumes and security
context. What a cluster would supply around a pod is supplied the way the cluster would:

- `$(VAR)` in arguments is expanded from the container's env, values from ConfigMaps and
  Secrets included, as the kubelet does (podman 4.3 passes them through unexpanded);
- a Service name in an argument (`http://esgf-ha-index:8080`, or qualified with its
  namespace) becomes the name of the one pod it selects here: podman's network resolves pod
  names, as cluster DNS resolves Service names;
- PersistentVolumeClaims (and a StatefulSet's claim templates) become podman named volumes,
  created first owned by the pod's fsGroup, as a volume with fsGroup is;
- Secret volumes become read-only directories holding the Secret's keys, group fsGroup,
  mode defaultMode: podman 4.3 cannot mount Secret volumes from a YAML file;
- container ports are published on a loopback address of the test's own, where the tests'
  searches and downloads (and the probes, which podman cannot run without systemd) reach them;
  a pod in the host's network (the DNS balancer, which must reach the other pods' published
  addresses as it reaches other sites) listens on such an address itself.
"""

from __future__ import annotations

import base64
import copy
import os
import re
from pathlib import Path
from typing import Any

from tests.kube_manifests import Obj, expand, pod_labels, pod_spec

FS_GROUP_DEFAULT = 10001


class PlayPlan:
    """Turns the rendered objects of several overlays into Pods for `podman kube play`."""

    def __init__(self, rendered: dict[str, list[Obj]], prefix: str, secrets_dir: Path) -> None:
        self.rendered = rendered
        self.prefix = prefix
        self.secrets_dir = secrets_dir
        self.pod_names: dict[tuple[str, str], str] = {}  # (overlay, workload) -> pod name
        self.claims: dict[str, int] = {}  # podman volume name -> owner (fsGroup)
        self.config_maps: list[Obj] = []

    def namespace(self, overlay: str) -> str:
        (ns,) = [o["metadata"]["name"] for o in self.rendered[overlay] if o["kind"] == "Namespace"]
        return ns

    def pod_name(self, overlay: str, workload: str) -> str:
        return self.pod_names.setdefault(
            (overlay, workload), f"{self.prefix}-{overlay}-{workload.removeprefix('esgf-ha-')}"
        )

    def _service_hosts(self, overlay: str) -> list[tuple[re.Pattern[str], str]]:
        """(pattern of the Service's names as seen from OVERLAY, pod name) for every Service."""
        out = []
        for other, objs in self.rendered.items():
            ns = self.namespace(other)
            workloads = [o for o in objs if o["kind"] in ("Deployment", "StatefulSet")]
            for svc in (o for o in objs if o["kind"] == "Service"):
                selector = svc["spec"]["selector"]
                (target,) = [
                    w
                    for w in workloads
                    if all(pod_labels(w).get(k) == v for k, v in selector.items())
                ]
                name = re.escape(svc["metadata"]["name"])
                qualified = rf"{name}\.{re.escape(ns)}(?:\.svc(?:\.cluster\.local)?)?"
                names = f"(?:{qualified}|{name})" if other == overlay else qualified
                pattern = re.compile(rf"(?<=//){names}(?=[:/])")
                out.append((pattern, self.pod_name(other, target["metadata"]["name"])))
        return out

    def _data(self, overlay: str, kind: str, name: str) -> dict[str, str]:
        (obj,) = [
            o for o in self.rendered[overlay] if o["kind"] == kind and o["metadata"]["name"] == name
        ]
        if kind == "Secret":
            return {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}
        return dict(obj.get("data", {}))

    def _secret_dir(self, overlay: str, name: str, mode: int, group: int) -> Path:
        directory = self.secrets_dir / overlay / name
        if not directory.exists():
            directory.mkdir(parents=True)
            for key, value in self._data(overlay, "Secret", name).items():
                path = directory / key
                path.write_text(value)
                os.chown(path, 0, group)
                path.chmod(mode)
            directory.chmod(0o755)
        return directory

    def pod(
        self,
        overlay: str,
        workload: Obj,
        host_ip: str | None,
        host_network: bool = False,
    ) -> Obj:
        """The Pod that plays WORKLOAD's pod template; ports published on HOST_IP."""
        spec: dict[str, Any] = copy.deepcopy(pod_spec(workload))
        name = self.pod_name(overlay, workload["metadata"]["name"])
        group = int(spec.get("securityContext", {}).get("fsGroup", FS_GROUP_DEFAULT))
        if workload["kind"] in ("Job", "CronJob"):
            spec["restartPolicy"] = "Never"
        volumes = list(spec.get("volumes", []))
        for template in workload["spec"].get("volumeClaimTemplates", []):
            claim = template["metadata"]["name"]
            volumes.append({"name": claim, "persistentVolumeClaim": {"claimName": claim}})
        for volume in volumes:
            if "persistentVolumeClaim" in volume:
                pvc = volume["persistentVolumeClaim"]
                if any(
                    t["metadata"]["name"] == pvc["claimName"]
                    for t in workload["spec"].get("volumeClaimTemplates", [])
                ):
                    # a StatefulSet pod's own claim: <template>-<pod>
                    pvc["claimName"] = f"{name}-{pvc['claimName']}"
                else:
                    pvc["claimName"] = f"{self.prefix}-{overlay}-{pvc['claimName']}"
                self.claims[pvc["claimName"]] = group
            elif "secret" in volume:
                secret = volume.pop("secret")
                mode = int(secret.get("defaultMode", 0o644))
                path = self._secret_dir(overlay, secret["secretName"], mode, group)
                volume["hostPath"] = {"path": str(path), "type": "Directory"}
            elif "configMap" in volume:
                cm = volume["configMap"]["name"]
                if not any(c["metadata"]["name"] == cm for c in self.config_maps):
                    (obj,) = [
                        o
                        for o in self.rendered[overlay]
                        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == cm
                    ]
                    self.config_maps.append(obj)
        spec["volumes"] = volumes
        services = self._service_hosts(overlay)
        for c in spec["containers"]:
            env: dict[str, str] = {}
            for entry in c.get("env", []):
                ref = entry.pop("valueFrom", None)
                if ref is not None:
                    kind, key_ref = (
                        ("Secret", ref["secretKeyRef"])
                        if "secretKeyRef" in ref
                        else ("ConfigMap", ref["configMapKeyRef"])
                    )
                    entry["value"] = self._data(overlay, kind, key_ref["name"])[key_ref["key"]]
                env[entry["name"]] = entry["value"]
            args = [expand(a, env) for a in c.get("args", [])]
            for pattern, pod_host in services:
                args = [pattern.sub(pod_host, a) for a in args]
            c["args"] = args
            # podman 4.3's Kubernetes types predate the sleep action; the grace before
            # SIGTERM is the cluster's business, not the pod's behaviour under test
            c.pop("lifecycle", None)
            if host_network:
                # the host's ports are the pod's: podman refuses mappings there
                c.pop("ports", None)
            for port in c.get("ports", []):
                if host_ip is not None:
                    port["hostIP"] = host_ip
                    port["hostPort"] = port["containerPort"]
        if host_network:
            spec["hostNetwork"] = True
        for key in ("topologySpreadConstraints", "affinity", "serviceAccountName"):
            spec.pop(key, None)
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": pod_labels(workload)},
            "spec": spec,
        }
