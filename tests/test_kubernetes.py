"""deploy/kubernetes/: valid Kubernetes objects that agree with tag-gate.

Every manifest is validated offline against the Kubernetes schemas (kubernetes-validate,
strict: unknown fields are errors) for the oldest and newest versions we claim. Then each
consistency check below returns its problems, and the shipped files must have none:
ports, probe paths and drain timings against the config the ConfigMap ships (parsed with
`proxy.core.config.parse_config`, the image's TAG_GATE_* variables applied as `tag-gate serve`
applies them) and tag-gate's defaults; the checksum annotation against the ConfigMap
file; the container's user against the Dockerfile's. A table of mutations, each one
wrong value in an in-memory copy of the manifests, proves that every check can fail.
Finally tag-gate runs with the shipped config and answers the probes as the manifests
expect, and drains within the time they allow.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import ipaddress
import re
import shlex
import signal
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, cast

import aiohttp
import kubernetes_validate
import pytest
import yaml
from aiohttp import web

from proxy.admin import make_admin_app
from proxy.cli import ENV_VARS
from proxy.core.config import Config, ConfigError, ServerConfig, Timeouts, parse_config
from proxy.core.running import check_runnable, with_overrides
from tests.test_cli_functional import serve_process, upstream
from tests.test_dockerfile import instructions

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy" / "kubernetes"

KUBERNETES_VERSIONS = ("1.30", "1.37")
"""Schema versions every manifest is validated against: 1.30 is the oldest the manifests
claim (the preStop `sleep` action and the HPA's ContainerResource metric are on by default
from 1.30), 1.37 the newest that kubernetes-validate 1.37.0 ships."""

CUSTOM_RESOURCES = frozenset({"prometheus-operator/podmonitor.yaml"})
"""Custom resources: no schema offline. Kept in subfolders, which `kubectl apply -f
deploy/kubernetes/` (not recursive) leaves out."""

TAG_GATE = "tag-gate"
"""The name of tag-gate's container in the Deployment."""

DRAIN_MARGIN = 5
"""Seconds terminationGracePeriodSeconds keeps beyond the last container's expected exit."""

ADMIN_PATHS = frozenset(
    route.resource.canonical
    for route in make_admin_app(lambda: False, bytes).router.routes()
    if route.resource is not None
)
"""The admin listener's paths."""


class ManifestError(Exception):
    """Something a check needs is missing from the manifests."""


@dataclass
class Manifests:
    docs: dict[str, list[dict[str, Any]]]
    """Path relative to deploy/kubernetes/ -> the YAML documents in it."""
    raw: dict[str, bytes]
    dockerfile: list[tuple[str, str]]


def load_manifests() -> Manifests:
    raw = {p.relative_to(DEPLOY).as_posix(): p.read_bytes() for p in sorted(DEPLOY.rglob("*.y*ml"))}
    docs = {name: [d for d in yaml.safe_load_all(data) if d] for name, data in raw.items()}
    return Manifests(docs, raw, instructions())


# --------------------------------------------------------------------------- reading the manifests


def applied(m: Manifests) -> list[tuple[str, dict[str, Any]]]:
    return [(name, doc) for name, docs in m.docs.items() if name not in CUSTOM_RESOURCES for doc in docs]


def the(m: Manifests, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for _, d in applied(m) if d.get("kind") == kind and name in (None, d["metadata"]["name"])]
    if len(found) != 1:
        raise ManifestError(f"expected one {kind}{f' {name}' if name else ''}, found {len(found)}")
    return found[0]


def file_of(m: Manifests, kind: str, name: str) -> str:
    for file, doc in applied(m):
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return file
    raise ManifestError(f"no {kind} {name}")


def pod_spec(m: Manifests) -> dict[str, Any]:
    return cast(dict[str, Any], the(m, "Deployment")["spec"]["template"]["spec"])


def containers(m: Manifests) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], pod_spec(m)["containers"])


def container(m: Manifests, name: str) -> dict[str, Any]:
    for c in containers(m):
        if c["name"] == name:
            return c
    raise ManifestError(f"no container {name}")


def container_port(m: Manifests, port: int | str) -> int:
    """A pod port by number or by the name one of its containers gives it."""
    if isinstance(port, int):
        return port
    for c in containers(m):
        for p in c.get("ports", []):
            if p.get("name") == port:
                return int(p["containerPort"])
    raise ManifestError(f"no container port named {port!r}")


def named_port(m: Manifests, name: str) -> int:
    for p in container(m, TAG_GATE).get("ports", []):
        if p.get("name") == name:
            return int(p["containerPort"])
    raise ManifestError(f"tag-gate has no port named {name!r}")


def dockerfile_env(m: Manifests) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in m.dockerfile:
        if keyword == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def tag_gate_env(m: Manifests) -> dict[str, str]:
    """The variables tag-gate sees: the image's, then the container's."""
    own = {e["name"]: e["value"] for e in container(m, TAG_GATE).get("env", []) if "value" in e}
    return {**dockerfile_env(m), **own}


def config_map_with_config(m: Manifests) -> tuple[dict[str, Any], str]:
    """The ConfigMap mounted where TAG_GATE_CONFIG points, and the key of the file."""
    path = PurePosixPath(tag_gate_env(m).get(ENV_VARS["config"], ""))
    mounts = [v for v in container(m, TAG_GATE).get("volumeMounts", []) if v["mountPath"] == str(path.parent)]
    if not mounts:
        raise ManifestError(f"nothing is mounted at {path.parent}, where {ENV_VARS['config']}={path} points")
    volumes = [v for v in pod_spec(m).get("volumes", []) if v["name"] == mounts[0]["name"]]
    if not volumes or "configMap" not in volumes[0]:
        raise ManifestError(f"volume {mounts[0]['name']} is not a ConfigMap")
    config_map = the(m, "ConfigMap", volumes[0]["configMap"]["name"])
    if path.name not in config_map.get("data", {}):
        raise ManifestError(f"ConfigMap {config_map['metadata']['name']} has no key {path.name}")
    return config_map, path.name


def shipped_config(m: Manifests) -> Config:
    config_map, key = config_map_with_config(m)
    return parse_config(tomllib.loads(config_map["data"][key]), source=f"ConfigMap {key}")


def effective_config(m: Manifests) -> Config:
    """The config `tag-gate serve` runs with: the file, then the environment's overrides."""
    env = tag_gate_env(m)
    overrides = {key: (var, env[var]) for key, var in ENV_VARS.items() if key != "config" and env.get(var)}
    return with_overrides(shipped_config(m), overrides)


def prestop_seconds(c: dict[str, Any]) -> float:
    hook = c.get("lifecycle", {}).get("preStop")
    if hook is None:
        return 0.0
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = hook.get("exec", {}).get("command", [])
    if len(command) == 2 and command[0].rsplit("/", 1)[-1] == "sleep":
        return float(command[1])
    raise ManifestError(f"{c['name']}: a preStop hook whose length cannot be read: {hook}")


# --------------------------------------------------------------------------- the checks


def check_schemas(m: Manifests) -> list[str]:
    problems = []
    for name, docs in m.docs.items():
        if name in CUSTOM_RESOURCES:
            if "/" not in name:
                problems.append(f"{name}: a custom resource at the top level breaks `kubectl apply -f`")
            continue
        if not docs:
            problems.append(f"{name}: no Kubernetes object")
        for doc in docs:
            for version in KUBERNETES_VERSIONS:
                where = f"{name} {doc.get('kind')} (Kubernetes {version})"
                try:
                    validated = kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    problems.append(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
                except kubernetes_validate.SchemaNotFoundError as exc:
                    problems.append(f"{where}: {exc.message} (a custom resource? see CUSTOM_RESOURCES)")
                else:
                    if validated != version:
                        problems.append(f"{where}: validated against {validated} instead")
    return problems


def check_config(m: Manifests) -> list[str]:
    """The shipped file is valid and runnable, and the image's variables agree with it."""
    try:
        config = shipped_config(m)
    except ConfigError as exc:
        return exc.problems
    problems = check_runnable(config)
    effective = effective_config(m)
    env = tag_gate_env(m)
    for key in ("listen", "admin_listen", "upstream"):
        if getattr(effective.server, key) != getattr(config.server, key):
            problems.append(
                f"{ENV_VARS[key]}={env[ENV_VARS[key]]} (image or container) overrides the ConfigMap's "
                f"server.{key}: change both together"
            )
    return problems


def check_ports(m: Manifests) -> list[str]:
    problems = []
    server = effective_config(m).server
    defaults = ServerConfig()
    assert defaults.admin_listen is not None
    if server.admin_listen is None:
        return ["server.admin_listen is off: nothing answers the probes"]
    http, admin = named_port(m, "http"), named_port(m, "admin")
    if http != server.listen.port:
        problems.append(f"container port http {http} != server.listen {server.listen}")
    if admin != server.admin_listen.port:
        problems.append(f"container port admin {admin} != server.admin_listen {server.admin_listen}")
    # tag-gate's defaults, which the Dockerfile's EXPOSE and HEALTHCHECK and the README use too.
    if (server.listen.port, server.admin_listen.port) != (defaults.listen.port, defaults.admin_listen.port):
        problems.append(f"ports {server.listen.port}, {server.admin_listen.port} are not tag-gate's defaults")
    exposed = {int(p) for k, rest in m.dockerfile if k == "EXPOSE" for p in rest.split()}
    if exposed != {http, admin}:
        problems.append(f"the Dockerfile exposes {sorted(exposed)}, the container {sorted({http, admin})}")
    for what, address in (("listen", server.listen), ("admin_listen", server.admin_listen)):
        if ipaddress.ip_address(address.host).is_loopback:
            problems.append(f"server.{what} {address} is loopback: the kubelet and the Service cannot reach it")
    upstream = server.upstream
    if upstream is None or not ipaddress.ip_address(upstream.host).is_loopback:
        problems.append(f"server.upstream {upstream and upstream.url} is not the site on the pod's loopback")
    elif (site := pod_port_owner(m, upstream.port)) is not None:
        problems.append(f"the site's port {upstream.port} is declared by container {site}: keep it loopback-only")
    service = the(m, "Service")
    ports = service["spec"]["ports"]
    if len(ports) != 1:
        problems.append(f"the Service exposes {len(ports)} ports: only tag-gate's public port belongs there")
    elif container_port(m, ports[0].get("targetPort", ports[0]["port"])) != http:
        problems.append(f"the Service sends traffic to {ports[0].get('targetPort')}, not tag-gate's public port")
    allowed = set()
    for rule in the(m, "NetworkPolicy")["spec"].get("ingress", []):
        for p in rule.get("ports", []):
            allowed.add(container_port(m, p["port"]))
            if container_port(m, p["port"]) == admin and not rule.get("from"):
                problems.append("the NetworkPolicy admits anyone to the admin port")
    if allowed != {http, admin}:
        problems.append(f"the NetworkPolicy admits ports {sorted(allowed)}, not {sorted({http, admin})}")
    placeholder = the(m, "ConfigMap", "site-placeholder")["data"]["default.conf"]
    if upstream is not None and f"listen {upstream.host}:{upstream.port};" not in placeholder:
        problems.append(f"the placeholder site does not listen on {upstream.host}:{upstream.port} alone")
    return problems


def pod_port_owner(m: Manifests, port: int) -> str | None:
    for c in containers(m):
        if any(p["containerPort"] == port for p in c.get("ports", [])):
            return str(c["name"])
    return None


def check_probes(m: Manifests) -> list[str]:
    problems = []
    server = effective_config(m).server
    if server.admin_listen is None:
        return ["server.admin_listen is off: nothing answers the probes"]
    tg = container(m, TAG_GATE)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = tg.get(probe, {}).get("httpGet")
        if get is None:
            problems.append(f"tag-gate has no {probe} with httpGet")
            continue
        if get.get("path") != path or path not in ADMIN_PATHS:
            problems.append(f"{probe} asks {get.get('path')}, not {path} on the admin listener")
        if container_port(m, get["port"]) != server.admin_listen.port:
            problems.append(f"{probe} asks port {get['port']}, not the admin port {server.admin_listen.port}")
    readiness = tg.get("readinessProbe", {})
    noticed = readiness.get("periodSeconds", 10) * readiness.get("failureThreshold", 3)
    delay = effective_config(m).timeouts.shutdown_delay
    if noticed >= delay:
        problems.append(f"readiness notices a drain after up to {noticed} s, not within shutdown_delay ({delay} s)")
    notes = the(m, "Deployment")["spec"]["template"]["metadata"].get("annotations", {})
    if notes.get("prometheus.io/scrape") != "true":
        problems.append("no prometheus.io/scrape: 'true' on the pod")
    if notes.get("prometheus.io/port") != str(server.admin_listen.port):
        problems.append(f"prometheus.io/port {notes.get('prometheus.io/port')} is not the admin port")
    if notes.get("prometheus.io/path") != "/metrics" or "/metrics" not in ADMIN_PATHS:
        problems.append(f"prometheus.io/path {notes.get('prometheus.io/path')} is not the admin /metrics")
    for name in CUSTOM_RESOURCES:
        for doc in m.docs[name]:
            for endpoint in doc["spec"].get("podMetricsEndpoints", []):
                if container_port(m, endpoint["port"]) != server.admin_listen.port:
                    problems.append(f"{name}: scrapes port {endpoint['port']}, not the admin port")
                if endpoint.get("path") != notes.get("prometheus.io/path"):
                    problems.append(f"{name}: scrapes {endpoint.get('path')}, the annotation says otherwise")
    return problems


def check_timings(m: Manifests) -> list[str]:
    problems = []
    timeouts = effective_config(m).timeouts
    if timeouts.shutdown_delay <= 0:
        problems.append("timeouts.shutdown_delay is 0: new connections are refused before endpoints update")
    # tag-gate exits within shutdown_delay + grace + 1 s of SIGTERM, which follows its preStop hook.
    own = prestop_seconds(container(m, TAG_GATE))
    exits = own + timeouts.shutdown_delay + timeouts.grace + 1
    period = pod_spec(m).get("terminationGracePeriodSeconds", 30)
    if period < exits + DRAIN_MARGIN:
        problems.append(
            f"terminationGracePeriodSeconds {period} < preStop {own} + shutdown_delay {timeouts.shutdown_delay}"
            f" + grace {timeouts.grace} + 1 + {DRAIN_MARGIN} s margin"
        )
    for c in containers(m):
        if c["name"] == TAG_GATE:
            continue
        sleep = prestop_seconds(c)
        if sleep < exits:
            problems.append(f"{c['name']} stops after {sleep} s, before tag-gate has drained ({exits} s)")
        if period < sleep + DRAIN_MARGIN:
            problems.append(f"{c['name']}'s preStop ({sleep} s) leaves it under {DRAIN_MARGIN} s to stop")
    return problems


def check_checksum(m: Manifests) -> list[str]:
    config_map, _ = config_map_with_config(m)
    file = file_of(m, "ConfigMap", config_map["metadata"]["name"])
    digest = hashlib.sha256(m.raw[file]).hexdigest()
    annotation = the(m, "Deployment")["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/config")
    if annotation != digest:
        return [
            f"checksum/config is {annotation}, sha256 of {file} is {digest}: run deploy/kubernetes/update-checksum.sh"
        ]
    return []


def check_security(m: Manifests) -> list[str]:
    problems = []
    spec = pod_spec(m)
    pod = spec.get("securityContext", {})
    if pod.get("runAsNonRoot") is not True:
        problems.append("the pod does not set runAsNonRoot: true")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("the pod mounts a service account token it never uses")
    users = [rest for keyword, rest in m.dockerfile if keyword == "USER"]
    for c in containers(m):
        ctx = {**pod, **c.get("securityContext", {})}
        name = c["name"]
        if ctx.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: seccomp profile is not RuntimeDefault")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if ctx.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem is not true")
        if "ALL" not in ctx.get("capabilities", {}).get("drop", []) or ctx.get("capabilities", {}).get("add"):
            problems.append(f"{name}: capabilities are not all dropped")
        if not isinstance(ctx.get("runAsUser"), int) or ctx["runAsUser"] == 0:
            problems.append(f"{name}: no non-root runAsUser")
        if name == TAG_GATE and [str(ctx.get("runAsUser"))] != users[-1:]:
            problems.append(f"tag-gate runs as {ctx.get('runAsUser')}, the Dockerfile's USER is {users[-1:]}")
    return problems


def check_resources(m: Manifests) -> list[str]:
    problems = []
    for c in containers(m):
        res = c.get("resources", {})
        for kind in ("cpu", "memory"):
            if kind not in res.get("requests", {}):
                problems.append(f"{c['name']}: no {kind} request (the HPA's utilization needs every request)")
        if "memory" not in res.get("limits", {}):
            problems.append(f"{c['name']}: no memory limit")
    return problems


def check_scaling(m: Manifests) -> list[str]:
    problems = []
    deployment = the(m, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    names = {c["name"] for c in containers(m)}

    def selects(selector: dict[str, Any], what: str) -> None:
        wanted = selector.get("matchLabels", {})
        if not wanted or any(labels.get(k) != v for k, v in wanted.items()):
            problems.append(f"{what} selects {wanted}, the pods carry {labels}")

    selects(deployment["spec"]["selector"], "the Deployment")
    selects(the(m, "PodDisruptionBudget")["spec"]["selector"], "the PodDisruptionBudget")
    selects({"matchLabels": the(m, "Service")["spec"].get("selector", {})}, "the Service")
    selects(the(m, "NetworkPolicy")["spec"]["podSelector"], "the NetworkPolicy")
    if "replicas" in deployment["spec"]:
        problems.append("the Deployment sets replicas: every `kubectl apply` would reset the HPA's count")
    hpa = the(m, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    wanted_target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    if target != wanted_target:
        problems.append(f"the HPA scales {target}, not the Deployment")
    if hpa["spec"].get("minReplicas", 1) < 2:
        problems.append("the HPA allows a single replica: a drain or a lost node would take the site down")
    cpu = []
    for metric in hpa["spec"]["metrics"]:
        source = metric.get("resource") or metric.get("containerResource") or {}
        if source.get("name") == "cpu":
            cpu.append(metric)
        if "container" in source and source["container"] not in names:
            problems.append(f"the HPA watches container {source['container']}, which the pod does not have")
    if not cpu:
        problems.append("the HPA does not scale on CPU")
    pdb = the(m, "PodDisruptionBudget")["spec"]
    if pdb.get("maxUnavailable", 0) < 1:
        problems.append(f"the PodDisruptionBudget {pdb} does not allow one pod at a time to be drained")
    return problems


CHECKS: dict[str, Callable[[Manifests], list[str]]] = {
    "schemas": check_schemas,
    "config": check_config,
    "ports": check_ports,
    "probes": check_probes,
    "timings": check_timings,
    "checksum": check_checksum,
    "security": check_security,
    "resources": check_resources,
    "scaling": check_scaling,
}


def run_check(name: str, m: Manifests) -> list[str]:
    try:
        return CHECKS[name](m)
    except ManifestError as exc:
        return [str(exc)]


@pytest.mark.parametrize("name", list(CHECKS))
def test_shipped_manifests_pass(name: str) -> None:
    assert run_check(name, load_manifests()) == []


# --------------------------------------------------------------------------- every check can fail


def edit_config(old: str, new: str) -> Callable[[Manifests], None]:
    def mutate(m: Manifests) -> None:
        config_map, key = config_map_with_config(m)
        text = config_map["data"][key]
        assert old in text
        config_map["data"][key] = text.replace(old, new)

    return mutate


def set_in(path: str, value: Any, kind: str = "Deployment", name: str | None = None) -> Callable[[Manifests], None]:
    """Set a value at a dotted path (`\\.` for a dot in a key); `c:NAME` steps into the
    container NAME, a number into a list."""

    def mutate(m: Manifests) -> None:
        node: Any = the(m, kind, name)
        *steps, last = [step.replace("\\.", ".") for step in re.split(r"(?<!\\)\.", path)]
        for step in steps:
            if step.startswith("c:"):
                node = next(c for c in node if c["name"] == step[2:])
            elif step.isdigit():
                node = node[int(step)]
            else:
                node = node.setdefault(step, {})
        if value is DELETE:
            del node[last]
        else:
            node[last] = value

    return mutate


DELETE: Any = object()
POD = "spec.template.spec"
SITE = f"{POD}.containers.c:site"
TG = f"{POD}.containers.c:{TAG_GATE}"


def append_to_config_map_file(m: Manifests) -> None:
    m.raw["configmap.yaml"] += b"# edited\n"


def add_service_port(m: Manifests) -> None:
    the(m, "Service")["spec"]["ports"].append({"name": "admin", "port": 9090, "targetPort": "admin"})


def move_podmonitor_to_top(m: Manifests) -> None:
    m.docs["podmonitor.yaml"] = m.docs["prometheus-operator/podmonitor.yaml"]


MUTATIONS: list[tuple[str, str, Callable[[Manifests], None]]] = [
    ("schemas", "field name typo", set_in(f"{TG}.securityContext.readOnlyRootFilesytem", True)),
    ("schemas", "wrong type", set_in(f"{TG}.ports.0.containerPort", "8080")),
    (
        "schemas",
        "autoscaling/v1 field in v2",
        set_in("spec.targetCPUUtilizationPercentage", 70, "HorizontalPodAutoscaler"),
    ),
    ("schemas", "custom resource applied with the rest", move_podmonitor_to_top),
    ("config", "unknown key (a typo)", edit_config("[server]\n", "[server]\nworkerz = 2\n")),
    ("config", "file disagrees with the image's variable", edit_config('"0.0.0.0:9090"', '"0.0.0.0:9091"')),
    ("config", "config mounted elsewhere", set_in(f"{TG}.volumeMounts.0.mountPath", "/etc/taggate")),
    ("ports", "admin container port", set_in(f"{TG}.ports.1.containerPort", 9091)),
    ("ports", "public container port", set_in(f"{TG}.ports.0.containerPort", 8081)),
    (
        "ports",
        "loopback admin listener",
        set_in(f"{TG}.env", [{"name": "TAG_GATE_ADMIN_LISTEN", "value": "127.0.0.1:9090"}]),
    ),
    ("ports", "Service to the admin port", set_in("spec.ports.0.targetPort", "admin", "Service")),
    ("ports", "Service exposes a second port", add_service_port),
    ("ports", "NetworkPolicy opens the site's port", set_in("spec.ingress.0.ports.0.port", 8000, "NetworkPolicy")),
    ("ports", "NetworkPolicy opens admin to all", set_in("spec.ingress.1.from", [], "NetworkPolicy")),
    ("ports", "site reachable from outside", set_in(f"{SITE}.ports", [{"containerPort": 8000}])),
    ("ports", "upstream elsewhere", edit_config('"http://127.0.0.1:8000"', '"http://127.0.0.1:8001"')),
    ("probes", "liveness on /readyz", set_in(f"{TG}.livenessProbe.httpGet.path", "/readyz")),
    ("probes", "readiness on the public port", set_in(f"{TG}.readinessProbe.httpGet.port", "http")),
    ("probes", "readiness too slow for the drain", set_in(f"{TG}.readinessProbe.periodSeconds", 10)),
    ("probes", "scrape the public port", set_in("spec.template.metadata.annotations.prometheus\\.io/port", "8080")),
    ("probes", "scrape path", set_in("spec.template.metadata.annotations.prometheus\\.io/path", "/metric")),
    ("timings", "grace period too short", set_in(f"{POD}.terminationGracePeriodSeconds", 30)),
    ("timings", "site stops before tag-gate drained", set_in(f"{SITE}.lifecycle.preStop.sleep.seconds", 10)),
    ("timings", "no shutdown delay", edit_config("shutdown_delay = 5.0", "shutdown_delay = 0.0")),
    ("timings", "longer grace", edit_config("grace = 25.0", "grace = 40.0")),
    ("timings", "tag-gate preStop on top", set_in(f"{TG}.lifecycle", {"preStop": {"sleep": {"seconds": 10}}})),
    ("checksum", "config changed, annotation not", append_to_config_map_file),
    ("checksum", "annotation edited", set_in("spec.template.metadata.annotations.checksum/config", "0" * 64)),
    ("security", "another user than the Dockerfile's", set_in(f"{TG}.securityContext.runAsUser", 10002)),
    ("security", "writable root", set_in(f"{SITE}.securityContext.readOnlyRootFilesystem", False)),
    ("security", "privilege escalation", set_in(f"{TG}.securityContext.allowPrivilegeEscalation", True)),
    ("security", "capabilities kept", set_in(f"{TG}.securityContext.capabilities.drop", [])),
    ("security", "no seccomp", set_in(f"{POD}.securityContext.seccompProfile.type", "Unconfined")),
    ("security", "root allowed", set_in(f"{POD}.securityContext.runAsNonRoot", DELETE)),
    ("resources", "no CPU request", set_in(f"{SITE}.resources.requests.cpu", DELETE)),
    ("resources", "no memory limit", set_in(f"{TG}.resources.limits.memory", DELETE)),
    ("scaling", "replicas in the Deployment", set_in("spec.replicas", 3)),
    ("scaling", "HPA scales another Deployment", set_in("spec.scaleTargetRef.name", "web", "HorizontalPodAutoscaler")),
    (
        "scaling",
        "HPA watches a missing container",
        set_in("spec.metrics.1.containerResource.container", "proxy", "HorizontalPodAutoscaler"),
    ),
    ("scaling", "single replica", set_in("spec.minReplicas", 1, "HorizontalPodAutoscaler")),
    ("scaling", "PDB selects nothing", set_in("spec.selector.matchLabels", {"app": "other"}, "PodDisruptionBudget")),
    ("scaling", "Service selects nothing", set_in("spec.selector", {"app": "other"}, "Service")),
    ("scaling", "PDB blocks drains", set_in("spec.maxUnavailable", 0, "PodDisruptionBudget")),
]


@pytest.mark.parametrize(
    ("name", "mutate"), [(n, f) for n, _, f in MUTATIONS], ids=[f"{n}: {w}" for n, w, _ in MUTATIONS]
)
def test_each_check_fails_on_a_wrong_value(name: str, mutate: Callable[[Manifests], None]) -> None:
    m = load_manifests()
    m.docs = copy.deepcopy(m.docs)
    mutate(m)
    assert run_check(name, m) != []


def test_every_check_has_a_mutation() -> None:
    assert {n for n, _, _ in MUTATIONS} == set(CHECKS)


# --------------------------------------------------------------------------- tag-gate with the shipped config


def probe_path(m: Manifests, probe: str) -> str:
    return str(container(m, TAG_GATE)[probe]["httpGet"]["path"])


@pytest.mark.slow
async def test_shipped_config_answers_the_probes_and_drains_in_time(tmp_path: Path) -> None:
    """The ConfigMap's file (addresses moved to loopback ports): the manifests' probe and
    scrape paths answer; on SIGTERM readiness fails while the public port still serves,
    and tag-gate exits 0 after shutdown_delay and within shutdown_delay + grace + 1 s."""
    m = load_manifests()
    config_map, key = config_map_with_config(m)
    config = tmp_path / key
    config.write_text(config_map["data"][key])
    timeouts = shipped_config(m).timeouts
    scrape = the(m, "Deployment")["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="the site")

    app = web.Application()
    app.router.add_get("/", page)
    async with upstream(app) as site:
        with serve_process("--config", str(config), "--upstream", f"http://127.0.0.1:{site.port}") as (
            proc,
            port,
            admin,
        ):
            async with aiohttp.ClientSession() as client:
                for path in (probe_path(m, "livenessProbe"), probe_path(m, "readinessProbe"), scrape):
                    async with client.get(f"http://127.0.0.1:{admin}{path}") as resp:
                        assert resp.status == 200, path
                async with client.get(f"http://127.0.0.1:{port}/") as resp:
                    assert await resp.text() == "the site"
                proc.send_signal(signal.SIGTERM)
                started = time.monotonic()
                await asyncio.sleep(0.5)
                async with client.get(f"http://127.0.0.1:{admin}{probe_path(m, 'readinessProbe')}") as resp:
                    assert resp.status == 503
                async with client.get(f"http://127.0.0.1:{admin}{probe_path(m, 'livenessProbe')}") as resp:
                    assert resp.status == 200
                await asyncio.sleep(timeouts.shutdown_delay / 2)
                async with client.get(f"http://127.0.0.1:{port}/") as resp:
                    assert await resp.text() == "the site"
            assert await asyncio.to_thread(proc.wait, timeouts.shutdown_delay + timeouts.grace + 10) == 0
            took = time.monotonic() - started
            assert timeouts.shutdown_delay <= took <= timeouts.shutdown_delay + timeouts.grace + 1


SHORT_GRACE = 3.0
"""timeouts.grace for the stuck-request test: the bound is the same formula for any grace,
and the shipped 25 s would make the test half a minute long."""


@pytest.mark.slow
async def test_shipped_config_cuts_a_stuck_request_within_shutdown_delay_plus_grace(tmp_path: Path) -> None:
    """The bound terminationGracePeriodSeconds is derived from: with a request the site
    never answers, tag-gate still exits within shutdown_delay + grace + 1 s of SIGTERM
    (the shipped file, with grace shortened to SHORT_GRACE)."""
    m = load_manifests()
    config_map, key = config_map_with_config(m)
    text = config_map["data"][key]
    assert "grace = 25.0" in text
    config = tmp_path / key
    config.write_text(text.replace("grace = 25.0", f"grace = {SHORT_GRACE}"))
    delay = shipped_config(m).timeouts.shutdown_delay
    never = asyncio.Event()

    async def stuck(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response(text="never")

    app = web.Application()
    app.router.add_get("/stuck", stuck)
    async with upstream(app) as site:
        with serve_process("--config", str(config), "--upstream", f"http://127.0.0.1:{site.port}") as (
            proc,
            port,
            admin,
        ):
            async with aiohttp.ClientSession() as client:
                pending = asyncio.ensure_future(client.get(f"http://127.0.0.1:{port}/stuck"))
                await asyncio.sleep(0.5)
                assert not pending.done()
                proc.send_signal(signal.SIGTERM)
                started = time.monotonic()
                code = await asyncio.to_thread(proc.wait, delay + 2 * SHORT_GRACE + 10)
                took = time.monotonic() - started
                with pytest.raises(aiohttp.ClientError):
                    (await pending).release()
            never.set()
    assert code == 0
    assert delay + SHORT_GRACE - 0.5 <= took <= delay + SHORT_GRACE + 1, f"exited {took:.1f} s after SIGTERM"


def test_timeout_defaults_the_manifests_rely_on() -> None:
    """The ConfigMap sets grace to tag-gate's default and shutdown_delay to the README's
    'about 5 s in Kubernetes'; a changed default must be a conscious change here too."""
    shipped = shipped_config(load_manifests()).timeouts
    assert shipped.grace == Timeouts().grace
    assert Timeouts().shutdown_delay == 0 < shipped.shutdown_delay == 5
