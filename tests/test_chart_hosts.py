"""The chart's list of broker addresses (`amqp.hosts`, a cluster's nodes): every
component that talks to the broker gets them, as what its settings read. Rendered by
the same real Helm as tests/test_chart.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memelearning.settings import load_settings
from tests.test_chart import CHART, env_of, only, run_helm
from worker.settings import WorkerSettings

Obj = dict[str, Any]

CLUSTER: Obj = {"amqp": {"hosts": ["rabbitmq-1.rabbitmq:5672", "rabbitmq-2.rabbitmq"]}}


@pytest.mark.parametrize("component", ["worker", "reactions"])
def test_each_component_gets_every_address(
    render: Callable[[Obj], list[Obj]], component: str
) -> None:
    env = env_of(only(render(CLUSTER), "Deployment", component))
    value = env[f"MEMELEARNING_{component.upper()}_AMQP_HOSTS"]["value"]
    assert value == "rabbitmq-1.rabbitmq:5672,rabbitmq-2.rabbitmq"


def test_the_worker_reads_the_rendered_value(
    render: Callable[[Obj], list[Obj]], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_of(only(render(CLUSTER), "Deployment", "worker"))
    monkeypatch.setenv(
        "MEMELEARNING_WORKER_AMQP_HOSTS", env["MEMELEARNING_WORKER_AMQP_HOSTS"]["value"]
    )
    assert load_settings(WorkerSettings).amqp_hosts == CLUSTER["amqp"]["hosts"]


def test_one_address_by_default(render: Callable[[Obj], list[Obj]]) -> None:
    for component in ("worker", "reactions"):
        env = env_of(only(render({}), "Deployment", component))
        assert f"MEMELEARNING_{component.upper()}_AMQP_HOSTS" not in env


def test_an_address_that_is_not_host_and_port_is_refused(helm: Path) -> None:
    values = {"amqp": {"hosts": ["amqp://rabbitmq-1/"]}}
    result = run_helm(helm, "template", "ml", str(CHART), values=values)
    assert result.returncode != 0
    assert "/amqp/hosts/0" in result.stderr
