"""Where the worker and the reactions service listen for HTTP (metrics, health, media):
loopback unless configured, the chart configuring every interface for its pods, and a
taken port stopping the process at once with one line that names the address."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from memelearning.cli import main
from reactions.settings import ReactionsSettings
from tests.test_chart import CHART, HELM, env_of, only, run_helm
from worker.settings import WorkerSettings


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another process (here: this test) listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_http_endpoints_listen_on_loopback_by_default() -> None:
    assert WorkerSettings.model_fields["http_host"].default == "127.0.0.1"
    assert ReactionsSettings.model_fields["http_host"].default == "127.0.0.1"


def test_the_chart_has_its_pods_listen_where_probes_reach_them() -> None:
    assert HELM.is_file(), f"{HELM} is missing: run `bash scripts/install-helm.sh`"
    result = run_helm(HELM, "template", "ml", str(CHART), values={})
    assert result.returncode == 0, result.stderr
    objects: list[dict[str, Any]] = [d for d in yaml.safe_load_all(result.stdout) if d]
    for component in ("worker", "reactions"):
        env = env_of(only(objects, "Deployment", component))
        assert env[f"MEMELEARNING_{component.upper()}_HTTP_HOST"]["value"] == "0.0.0.0"


def test_a_worker_whose_port_is_taken_stops_with_one_line(
    amqp_url: str,
    taken_port: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MEMELEARNING_WORKER_AMQP_URL", amqp_url)
    # when
    code = main(["worker", "--http-port", str(taken_port)])
    # then
    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"memelearning worker: cannot listen on http://127.0.0.1:{taken_port}/ "
        "(metrics and health): address already in use (another process has that port; "
        "set MEMELEARNING_WORKER_HTTP_PORT to a free one)"
    ]


def test_reactions_serve_whose_port_is_taken_stops_with_one_line(
    amqp_url: str,
    taken_port: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MEMELEARNING_REACTIONS_AMQP_URL", amqp_url)
    monkeypatch.setenv("MEMELEARNING_REACTIONS_HTTP_PORT", str(taken_port))
    code = main(["reactions", "serve"])
    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"memelearning reactions: cannot listen on http://127.0.0.1:{taken_port}/ "
        "(metrics, health and media): address already in use (another process has that "
        "port; set MEMELEARNING_REACTIONS_HTTP_PORT to a free one)"
    ]


def test_the_help_speaks_to_people_running_the_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "Gesture reactions for video meetings" in out
    assert "register(subparsers)" not in out
