"""The Helm chart, rendered by a real Helm (scripts/install-helm.sh puts it in .tools/):
``helm lint``, ``helm template`` with default and non-default values, every core object
validated against the Kubernetes schemas, the CRD objects (KEDA, Prometheus Operator)
checked by structure, and the fields that keep the fleet safe asserted."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "memelearning"
HELM = Path(os.environ.get("MEMELEARNING_HELM", ROOT / ".tools" / "bin" / "helm"))
KUBERNETES_VERSION = "1.30"

Obj = dict[str, Any]

GPU_VALUES: Obj = {
    "image": {"tag": "1.2.3"},
    "worker": {
        "gpu": {"enabled": True, "count": 2},
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "settings": {"maxBatch": 32, "prefetch": 96, "drainTimeoutSeconds": 50},
        "terminationGracePeriodSeconds": 75,
    },
    "reactions": {
        "existingSecret": "meeting-api",
        "settings": {"meetingApiUrl": "https://api.example.com", "injectionMode": "playback"},
    },
    "keda": {"queueLength": 128, "minReplicaCount": 0, "maxReplicaCount": 20},
    "networkPolicy": {
        "metricsFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
        "brokerTo": [{"podSelector": {"matchLabels": {"app": "rabbitmq"}}}],
    },
    "serviceMonitor": {"labels": {"release": "kube-prometheus-stack"}},
}


def run_helm(helm: Path, *args: str, values: Obj | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(helm), *args]
    if values is not None:
        command += ["--values", "-"]
    return subprocess.run(
        command, input=json.dumps(values or {}), capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def render(helm: Path) -> Callable[[Obj], list[Obj]]:
    def _render(values: Obj) -> list[Obj]:
        result = run_helm(
            helm, "template", "ml", str(CHART), "--namespace", "gestures", values=values
        )
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return _render


def only(objects: list[Obj], kind: str, component: str | None = None) -> Obj:
    found = [
        o
        for o in objects
        if o["kind"] == kind
        and (
            component is None
            or o["metadata"]["labels"].get("app.kubernetes.io/component") == component
        )
    ]
    assert len(found) == 1, f"expected one {kind} {component or ''}, found {len(found)}"
    return found[0]


def container(deployment: Obj) -> Obj:
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(main)


def env_of(deployment: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container(deployment).get("env", [])}


def config_of(objects: list[Obj], component: str) -> dict[str, str]:
    return dict(only(objects, "ConfigMap", component)["data"])


# -- Helm itself


@pytest.mark.parametrize("values", [{}, GPU_VALUES], ids=["defaults", "gpu"])
def test_helm_lint_passes_in_strict_mode(helm: Path, values: Obj) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), values=values)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"amqp": {"existingSecret": ""}}, "existingSecret"),
        ({"worker": {"terminationGracePeriodSeconds": 20}}, "terminationGracePeriodSeconds"),
        ({"keda": {"queueLength": 32}}, "must exceed the worker prefetch"),
        ({"keda": {"protocol": "mqtt"}}, "protocol"),
        ({"worker": {"settings": {"maxBatch": 0}}}, "maxBatch"),
        ({"worker": {"unknownSetting": 1}}, "unknownSetting"),
    ],
    ids=[
        "no-secret",
        "grace-shorter-than-drain",
        "target-below-prefetch",
        "protocol",
        "batch",
        "typo",
    ],
)
def test_values_that_cannot_work_are_refused(helm: Path, values: Obj, message: str) -> None:
    result = run_helm(helm, "template", "ml", str(CHART), values=values)

    assert result.returncode != 0
    assert message in result.stderr


def undocumented_values(text: str) -> list[str]:
    """Keys in a values file with no ``# --`` comment block above them, except sections
    (mappings whose keys are checked in turn) and keys inside a documented value."""
    lines = text.splitlines()
    missing: list[str] = []
    documented_parents: list[int] = []  # indents of documented ancestors
    for number, line in enumerate(lines):
        key = re.match(r"^(\s*)([A-Za-z][\w.-]*):(.*)$", line)
        if not key:
            continue
        indent = len(key.group(1))
        documented_parents = [i for i in documented_parents if i < indent]
        if documented_parents:
            continue
        block = []
        for above in reversed(lines[:number]):
            if not above.strip().startswith("#"):
                break
            block.append(above.strip())
        if any(comment.startswith("# --") for comment in block):
            documented_parents.append(indent)
        elif key.group(3).strip():
            missing.append(key.group(2))
    return missing


def test_every_value_is_documented() -> None:
    assert undocumented_values((CHART / "values.yaml").read_text()) == []


def test_the_documentation_check_finds_an_undocumented_value() -> None:
    text = "a:\n  # -- documented\n  b: 1\n  c: 2\n# -- a documented map\nd:\n  e: 3\n"

    assert undocumented_values(text) == ["c"]


# -- Kubernetes schemas


@pytest.mark.parametrize(
    "values",
    [{}, GPU_VALUES, {"keda": {"enabled": False}}, {"reactions": {"enabled": False}}],
    ids=["defaults", "gpu", "hpa", "workers-only"],
)
def test_rendered_core_objects_validate_against_kubernetes_schemas(
    render: Callable[[Obj], list[Obj]], values: Obj
) -> None:
    objects = render(values)

    core = [o for o in objects if not o["apiVersion"].startswith(("keda.sh/", "monitoring."))]
    assert core
    for obj in core:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_schema_validation_rejects_a_broken_object(render: Callable[[Obj], list[Obj]]) -> None:
    deployment = only(render({}), "Deployment", "worker")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = {
        "name": "http-metrics"
    }

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


# -- the worker


def test_worker_readiness_is_the_model_warm_endpoint_and_liveness_the_loop(
    render: Callable[[Obj], list[Obj]],
) -> None:
    worker = container(only(render({}), "Deployment", "worker"))

    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    assert worker["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http-metrics"}
    assert worker["startupProbe"]["httpGet"]["path"] == "/livez"
    (port,) = worker["ports"]
    assert port["containerPort"] == WorkerSettings.model_fields["http_port"].default


@pytest.mark.parametrize("values", [{}, GPU_VALUES], ids=["defaults", "gpu"])
def test_grace_period_outlasts_the_drain_the_worker_is_told(
    render: Callable[[Obj], list[Obj]], values: Obj
) -> None:
    objects = render(values)
    pod = only(objects, "Deployment", "worker")["spec"]["template"]["spec"]

    drain_s = float(config_of(objects, "worker")["MEMELEARNING_WORKER_DRAIN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] > drain_s


def test_gpu_values_request_gpus_pin_nodes_and_pick_the_gpu_image(
    render: Callable[[Obj], list[Obj]],
) -> None:
    deployment = only(render(GPU_VALUES), "Deployment", "worker")
    pod = deployment["spec"]["template"]["spec"]
    worker = container(deployment)

    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert worker["resources"]["requests"]["cpu"] == "1"
    assert worker["image"].endswith(":1.2.3-gpu")
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_default_worker_runs_the_cpu_image_without_gpus(render: Callable[[Obj], list[Obj]]) -> None:
    worker = container(only(render({}), "Deployment", "worker"))

    assert "nvidia.com/gpu" not in worker["resources"].get("limits", {})
    assert worker["image"].endswith(":0.1.0")


def test_worker_settings_reach_the_worker_as_valid_environment(
    render: Callable[[Obj], list[Obj]],
) -> None:
    settings = config_of(render(GPU_VALUES), "worker")

    parsed = WorkerSettings.model_validate(
        {k.removeprefix("MEMELEARNING_WORKER_").lower(): v for k, v in settings.items()}
    )
    assert (parsed.max_batch, parsed.prefetch, parsed.drain_timeout_s) == (32, 96, 50.0)
    assert parsed.queue == "memelearning.frames.queue"


# -- secrets


@pytest.mark.parametrize("values", [{}, GPU_VALUES], ids=["defaults", "gpu"])
def test_credentials_come_only_from_existing_secrets(
    render: Callable[[Obj], list[Obj]], values: Obj
) -> None:
    objects = render(values)

    assert not [o for o in objects if o["kind"] == "Secret"]
    text = yaml.safe_dump_all(objects)
    assert not re.search(r"(amqps?|https?)://[^/\s\"']*:[^/\s\"']*@", text)
    for component in ("worker", "reactions"):
        amqp = env_of(only(objects, "Deployment", component))[
            f"MEMELEARNING_{component.upper()}_AMQP_URL"
        ]
        assert amqp["valueFrom"]["secretKeyRef"] == {"name": "memelearning-amqp", "key": "amqpUrl"}
        assert "value" not in amqp


def test_the_meeting_api_key_is_read_from_its_secret(render: Callable[[Obj], list[Obj]]) -> None:
    env = env_of(only(render(GPU_VALUES), "Deployment", "reactions"))

    assert env["MEMELEARNING_REACTIONS_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "meeting-api",
        "key": "apiKey",
    }
    assert env["MEMELEARNING_REACTIONS_ACCESS_KEYS"]["valueFrom"]["secretKeyRef"]["optional"]


# -- scaling


def test_keda_scales_workers_on_the_frames_queue_counting_unacked(
    render: Callable[[Obj], list[Obj]],
) -> None:
    objects = render({})
    scaled = only(objects, "ScaledObject")
    auth = only(objects, "TriggerAuthentication")
    deployment = only(objects, "Deployment", "worker")

    assert scaled["apiVersion"] == auth["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    metadata = trigger["metadata"]
    assert metadata["queueName"] == WorkerSettings.model_fields["queue"].default
    assert metadata["mode"] == "QueueLength"
    assert metadata["protocol"] == "http"
    assert metadata["excludeUnacknowledged"] == "false"
    assert all(isinstance(v, str) for v in metadata.values())
    assert int(metadata["value"]) > 2 * WorkerSettings.model_fields["max_batch"].default
    assert int(metadata["activationValue"]) >= 0
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert "host" not in metadata
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "host", "name": "memelearning-amqp", "key": "managementUrl"}
    ]
    spec = scaled["spec"]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["cooldownPeriod"] > 0
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] > 0
    assert "replicas" not in deployment["spec"]
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]


def test_amqp_protocol_authenticates_with_the_amqp_url(render: Callable[[Obj], list[Obj]]) -> None:
    objects = render({"keda": {"protocol": "amqp"}})

    metadata = only(objects, "ScaledObject")["spec"]["triggers"][0]["metadata"]
    assert "excludeUnacknowledged" not in metadata
    assert only(objects, "TriggerAuthentication")["spec"]["secretTargetRef"][0]["key"] == "amqpUrl"


def test_without_keda_a_plain_hpa_scales_the_workers(render: Callable[[Obj], list[Obj]]) -> None:
    objects = render({"keda": {"enabled": False}})

    hpa = only(objects, "HorizontalPodAutoscaler")
    assert (
        hpa["spec"]["scaleTargetRef"]["name"]
        == only(objects, "Deployment", "worker")["metadata"]["name"]
    )
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert not [o for o in objects if o["apiVersion"].startswith("keda.sh/")]


def test_without_any_autoscaler_the_replica_count_is_fixed(
    render: Callable[[Obj], list[Obj]],
) -> None:
    objects = render(
        {"keda": {"enabled": False}, "hpa": {"enabled": False}, "worker": {"replicas": 3}}
    )

    assert only(objects, "Deployment", "worker")["spec"]["replicas"] == 3
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]


# -- hardening


@pytest.mark.parametrize("component", ["worker", "reactions"])
def test_pods_run_non_root_read_only_without_capabilities(
    render: Callable[[Obj], list[Obj]], component: str
) -> None:
    pod = only(render({}), "Deployment", component)["spec"]["template"]["spec"]
    (main,) = pod["containers"]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"name": "tmp", "mountPath": "/tmp"} in main["volumeMounts"]
    assert main["resources"]["requests"] and main["resources"]["limits"]["memory"]


def test_reactions_run_one_replica_and_drain_after_leaving_endpoints(
    render: Callable[[Obj], list[Obj]],
) -> None:
    deployment = only(render({}), "Deployment", "reactions")
    pod = deployment["spec"]["template"]["spec"]
    main = container(deployment)

    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    sleep_s = int(main["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > sleep_s + 10
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("component", ["worker", "reactions"])
def test_disruption_budgets_cover_each_component(
    render: Callable[[Obj], list[Obj]], component: str
) -> None:
    objects = render({})

    pdb = only(objects, "PodDisruptionBudget", component)
    pod_labels = only(objects, "Deployment", component)["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_network_policies_open_only_the_http_port_and_the_broker(
    render: Callable[[Obj], list[Obj]],
) -> None:
    objects = render(GPU_VALUES)

    worker = only(objects, "NetworkPolicy", "worker")["spec"]
    assert worker["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = worker["ingress"]
    assert ingress["ports"] == [{"port": 9100, "protocol": "TCP"}]
    assert ingress["from"] == GPU_VALUES["networkPolicy"]["metricsFrom"]
    egress_ports = {p["port"] for rule in worker["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 5672, 5671}
    broker_rule = next(r for r in worker["egress"] if r["ports"][0]["port"] == 5672)
    assert broker_rule["to"] == GPU_VALUES["networkPolicy"]["brokerTo"]
    reactions = only(objects, "NetworkPolicy", "reactions")["spec"]
    assert {p["port"] for rule in reactions["egress"] for p in rule["ports"]} >= {443}


def test_service_monitor_scrapes_both_metrics_services(render: Callable[[Obj], list[Obj]]) -> None:
    objects = render(GPU_VALUES)

    monitor = only(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["gestures"]}
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    for component in ("worker", "reactions"):
        service = only(objects, "Service", component)
        assert selector <= service["metadata"]["labels"].items()
        assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
