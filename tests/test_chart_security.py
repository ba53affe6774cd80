"""The chart's broker security values: one AMQP URL (broker user) per component and the
TLS CA / client certificate mounted from an existing Secret. Rendered by the same real
Helm as tests/test_chart.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.test_chart import CHART, KUBERNETES_VERSION, container, env_of, only, run_helm

Obj = dict[str, Any]

SECURE: Obj = {
    "amqp": {
        "workerUrlKey": "workerAmqpUrl",
        "reactionsUrlKey": "reactionsAmqpUrl",
        "tls": {
            "existingSecret": "broker-tls",
            "clientCertificate": True,
            "serverName": "rabbitmq.messaging.svc",
        },
    }
}
TLS_DIR = "/etc/memelearning/amqp-tls"


@pytest.mark.parametrize("component", ["worker", "reactions"])
def test_each_component_reads_its_own_url_and_the_tls_files(
    render: Callable[[Obj], list[Obj]], component: str
) -> None:
    deployment = only(render(SECURE), "Deployment", component)
    env = env_of(deployment)
    prefix = f"MEMELEARNING_{component.upper()}_"

    assert env[prefix + "AMQP_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "memelearning-amqp",
        "key": f"{component}AmqpUrl",
    }
    assert env[prefix + "TLS_CA_FILE"]["value"] == f"{TLS_DIR}/ca.crt"
    assert env[prefix + "TLS_CERT_FILE"]["value"] == f"{TLS_DIR}/tls.crt"
    assert env[prefix + "TLS_KEY_FILE"]["value"] == f"{TLS_DIR}/tls.key"
    assert env[prefix + "TLS_SERVER_NAME"]["value"] == "rabbitmq.messaging.svc"
    mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
    assert mounts["amqp-tls"] == {"name": "amqp-tls", "mountPath": TLS_DIR, "readOnly": True}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    # 0440: the pods' fsGroup may read the key, nobody else.
    assert volumes["amqp-tls"]["secret"] == {"secretName": "broker-tls", "defaultMode": 0o440}
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_a_ca_without_client_certificate_sets_no_key_files(
    render: Callable[[Obj], list[Obj]],
) -> None:
    values = {"amqp": {"tls": {"existingSecret": "broker-ca"}}}
    env = env_of(only(render(values), "Deployment", "worker"))

    assert env["MEMELEARNING_WORKER_TLS_CA_FILE"]["value"] == f"{TLS_DIR}/ca.crt"
    assert "MEMELEARNING_WORKER_TLS_CERT_FILE" not in env
    assert "MEMELEARNING_WORKER_TLS_KEY_FILE" not in env
    assert "MEMELEARNING_WORKER_TLS_SERVER_NAME" not in env


def test_by_default_nothing_changes(render: Callable[[Obj], list[Obj]]) -> None:
    for component in ("worker", "reactions"):
        deployment = only(render({}), "Deployment", component)
        env = env_of(deployment)
        assert not [name for name in env if "_TLS_" in name]
        assert env[f"MEMELEARNING_{component.upper()}_AMQP_URL"]["valueFrom"]["secretKeyRef"][
            "key"
        ] == ("amqpUrl")
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert [v["name"] for v in volumes] == ["tmp"]


def test_helm_lint_passes_with_the_security_values(helm: Path) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), values=SECURE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unknown_tls_values_are_refused(helm: Path) -> None:
    values = {"amqp": {"tls": {"existingSecret": "x", "clientCertificate": True, "verify": False}}}
    result = run_helm(helm, "template", "ml", str(CHART), values=values)
    assert result.returncode != 0
    assert "verify" in result.stderr
