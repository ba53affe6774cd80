"""The local stack (docker-compose.yml, deploy/): structure, healthchecks, start-up
order, and that Prometheus and Grafana look where the processes actually serve.
Docker itself is not available to the tests, so the files are checked as data."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from memelearning.cli import build_parser
from publisher.settings import PublisherSettings
from reactions.settings import ReactionsSettings
from worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"

Obj = dict[str, Any]
SETTINGS: dict[str, type[WorkerSettings | ReactionsSettings | PublisherSettings]] = {
    "MEMELEARNING_WORKER_": WorkerSettings,
    "MEMELEARNING_REACTIONS_": ReactionsSettings,
    "MEMELEARNING_PUBLISHER_": PublisherSettings,
}


def interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}`` with nothing set: the default."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


@pytest.fixture(scope="module")
def compose() -> Obj:
    return dict(yaml.safe_load(interpolate(COMPOSE.read_text())))


@pytest.fixture(scope="module")
def services(compose: Obj) -> dict[str, Obj]:
    return dict(compose["services"])


def test_the_stack_has_every_component(services: dict[str, Obj]) -> None:
    assert set(services) >= {
        "rabbitmq",
        "worker",
        "reactions",
        "publisher",
        "prometheus",
        "grafana",
    }


def test_every_service_has_a_healthcheck(services: dict[str, Obj]) -> None:
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name


def test_services_wait_for_healthy_dependencies(services: dict[str, Obj]) -> None:
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition == {"condition": "service_healthy"}, name
    assert "rabbitmq" in services["worker"]["depends_on"]
    assert "worker" in services["publisher"]["depends_on"]


def test_the_worker_scales_and_outlives_its_drain(services: dict[str, Obj]) -> None:
    worker = services["worker"]

    # A fixed host port or container name would stop `--scale worker=N`.
    assert "ports" not in worker and "container_name" not in worker
    assert worker["healthcheck"]["test"][1:] == ["memelearning", "worker", "check"]
    grace_s = int(worker["stop_grace_period"].rstrip("s"))
    assert grace_s > WorkerSettings.model_fields["drain_timeout_s"].default


def test_memelearning_containers_are_hardened(services: dict[str, Obj]) -> None:
    for name in ("worker", "reactions", "publisher", "meeting-sim"):
        service = services[name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "/tmp" in service["tmpfs"], name


def test_environment_names_exist_in_the_settings_and_parse(services: dict[str, Obj]) -> None:
    seen = set()
    for name, service in services.items():
        for variable, value in service.get("environment", {}).items():
            prefix = next((p for p in SETTINGS if variable.startswith(p)), None)
            if prefix is None:
                continue
            field = variable.removeprefix(prefix).lower()
            settings = SETTINGS[prefix]
            assert field in settings.model_fields, f"{name}: {variable} is no setting"
            settings.model_validate({field: value})
            seen.add(prefix)
    assert seen == set(SETTINGS)


def test_every_process_connects_to_the_compose_broker(services: dict[str, Obj]) -> None:
    rabbit = services["rabbitmq"]["environment"]
    credentials = f"{rabbit['RABBITMQ_DEFAULT_USER']}:{rabbit['RABBITMQ_DEFAULT_PASS']}"
    for variable in (
        services["worker"]["environment"]["MEMELEARNING_WORKER_AMQP_URL"],
        services["reactions"]["environment"]["MEMELEARNING_REACTIONS_AMQP_URL"],
        services["publisher"]["environment"]["MEMELEARNING_PUBLISHER_AMQP_URL"],
    ):
        assert variable == f"amqp://{credentials}@rabbitmq:5672/"


@pytest.mark.parametrize("name", ["worker", "reactions", "publisher", "meeting-sim"])
def test_commands_parse_with_the_memelearning_cli(services: dict[str, Obj], name: str) -> None:
    args = build_parser().parse_args([str(a) for a in services[name]["command"]])

    assert callable(args.func)


def test_reactions_listen_where_they_are_probed(services: dict[str, Obj]) -> None:
    reactions = services["reactions"]

    port = reactions["environment"]["MEMELEARNING_REACTIONS_HTTP_PORT"]
    assert f"127.0.0.1:{port}/readyz" in " ".join(reactions["healthcheck"]["test"])
    assert f"{port}:{port}" in reactions["ports"]


def test_rabbitmq_runs_the_management_and_prometheus_plugins(services: dict[str, Obj]) -> None:
    plugins = (DEPLOY / "rabbitmq" / "enabled_plugins").read_text()

    assert re.fullmatch(r"\[rabbitmq_management,rabbitmq_prometheus\]\.\n", plugins)
    assert any(
        v.startswith("./deploy/rabbitmq/enabled_plugins:") for v in services["rabbitmq"]["volumes"]
    )


def test_prometheus_scrapes_each_service_where_it_serves_metrics(
    services: dict[str, Obj],
) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}

    (worker_sd,) = jobs["worker"]["dns_sd_configs"]
    assert worker_sd["names"] == ["worker"]
    assert worker_sd["port"] == WorkerSettings.model_fields["http_port"].default
    port = services["reactions"]["environment"]["MEMELEARNING_REACTIONS_HTTP_PORT"]
    assert jobs["reactions"]["static_configs"][0]["targets"] == [f"reactions:{port}"]
    assert jobs["rabbitmq"]["static_configs"][0]["targets"] == ["rabbitmq:15692"]
    assert jobs["rabbitmq"]["metrics_path"] == "/metrics/detailed"
    mounted = services["prometheus"]["volumes"][0].split(":")
    assert (ROOT / mounted[0]).resolve() == (DEPLOY / "prometheus" / "prometheus.yml")


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard(
    services: dict[str, Obj],
) -> None:
    datasources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    providers = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "memelearning.yml").read_text()
    )

    (datasource,) = datasources["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = providers["providers"]
    mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]


@pytest.fixture(scope="module")
def dashboard() -> Obj:
    return dict(json.loads((DEPLOY / "grafana" / "dashboards" / "memelearning.json").read_text()))


def exprs(panel: Obj) -> str:
    return " ".join(target["expr"] for target in panel["targets"])


@pytest.mark.parametrize(
    ("title", "metric"),
    [
        (
            "Queue depth",
            'rabbitmq_detailed_queue_messages_ready{queue="memelearning.frames.queue"}',
        ),
        ("Frames/s", "memelearning_worker_frames_processed_total"),
        ("Batch size", "memelearning_worker_batch_size"),
        ("Frame age p50/p99", "memelearning_worker_frame_age_at_pickup_seconds_bucket"),
        ("Inference time", "memelearning_worker_inference_seconds_bucket"),
        ("Reactions by label", "memelearning_worker_events_published_total"),
        ("Model versions: frames/s", "memelearning_worker_frames_detected_total"),
        ("Model versions: p99", "memelearning_worker_frame_age_at_event_seconds_bucket"),
        ("Model swaps and refusals", "memelearning_worker_model_refused_total"),
    ],
)
def test_the_dashboard_has_the_panels_ops_need(dashboard: Obj, title: str, metric: str) -> None:
    (panel,) = [p for p in dashboard["panels"] if p["title"].startswith(title)]

    assert metric in exprs(panel)
    assert panel["datasource"]["uid"] == "prometheus"


def test_dashboard_metrics_are_ones_the_processes_export(dashboard: Obj) -> None:
    from prometheus_client import CollectorRegistry

    from reactions.metrics import Metrics as ReactionsMetrics
    from worker.metrics import WorkerMetrics

    registry = CollectorRegistry()
    WorkerMetrics(registry)
    ReactionsMetrics(registry)
    # Labelled series have no samples until used: names follow from each family's type.
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    exported = {
        family.name + suffix
        for family in registry.collect()
        for suffix in suffixes.get(family.type, [""])
    }
    used = set(re.findall(r"memelearning_[a-z_]+", " ".join(exprs(p) for p in dashboard["panels"])))

    assert used and used <= exported, used - exported
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_no_service_puts_a_broker_url_on_its_command_line(services: dict[str, Obj]) -> None:
    for name, service in services.items():
        command = " ".join(str(part) for part in service.get("command", []))
        assert "amqp://" not in command and "amqps://" not in command, name
