"""TLS (``amqps://``) between every component and a real RabbitMQ with a TLS listener.

A private node (tests/broker_node.py) is started with a certificate from a CA made at
test time (tests/certs.py); the shared broker is never reconfigured. Every component
connects the way it does in production: FramePublisher, Worker and ``reactions tail``
through their settings classes.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from memelearning.amqp import BrokerTlsError
from memelearning.settings import SettingsError, load_settings
from publisher.errors import BrokerUnavailableError
from publisher.publishing import FramePublisher
from publisher.settings import PublisherSettings
from reactions.settings import ReactionsSettings
from reactions.tail import tail
from tests.broker import Broker
from tests.broker_node import PrivateBroker, TlsListener
from tests.certs import CLIENT_CN, KEY_PASSWORD, Pki, make_pki
from tests.frames import make_frame
from tests.workers import ThumbsUpDetector, worker_settings
from worker.service import Worker
from worker.settings import WorkerSettings

# Passwords of the private node's guest user: must never show in an error either.
URL_PASSWORD = "guest"
# A password that must never appear in output.
SECRET = "do-not-print-me"
# Node name → the connections of the last _frame_to_event_over_tls on that node.
_last_connections: dict[str, list[dict[str, Any]]] = {}
# The management API lists connections from statistics collected every 5 s by default.
FAST_STATISTICS = "collect_statistics_interval = 250\n"


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    directory = Path(tempfile.mkdtemp(prefix="pki-"))
    try:
        yield make_pki(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _start(node: PrivateBroker) -> PrivateBroker:
    try:
        node.start()
    except RuntimeError as exc:
        node.close()
        # A broker that cannot start is a failure, never a skip.
        pytest.fail(str(exc), pytrace=False)
    return node


@pytest.fixture(scope="module")
def tls_node(pki: Pki) -> Iterator[PrivateBroker]:
    """TLS listener that asks for a client certificate but accepts clients without one."""
    listener = TlsListener(
        certfile=pki.server_cert, keyfile=pki.server_key, cacertfile=pki.ca, verify_peer=True
    )
    node = _start(PrivateBroker(tls=listener, extra_config=FAST_STATISTICS))
    yield node
    node.close()


@pytest.fixture
def tls_vhost(tls_node: PrivateBroker) -> Iterator[str]:
    name = tls_node.create_vhost("tls")
    yield name
    tls_node.management.delete_vhost(name)


def _url(node: PrivateBroker, vhost: str, host: str = "localhost") -> str:
    return node.amqps_url(vhost, host=host)


@asynccontextmanager
async def tailing(settings: ReactionsSettings) -> AsyncIterator[asyncio.Queue[str]]:
    lines: asyncio.Queue[str] = asyncio.Queue()
    ready = asyncio.Event()
    task = asyncio.create_task(
        tail(str(settings.amqp_url), lines.put_nowait, ready=ready, tls=settings)
    )
    try:
        async with asyncio.timeout(60):
            done, _ = await asyncio.wait(
                [task, asyncio.ensure_future(ready.wait())], return_when=asyncio.FIRST_COMPLETED
            )
        if task in done:
            task.result()  # raises why the tail could not start
        yield lines
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def _connections(node: PrivateBroker, vhost: str, count: int) -> list[dict[str, Any]]:
    """The vhost's connections as the management API lists them, once there are
    ``count`` (its statistics lag behind by up to collect_statistics_interval)."""
    async with asyncio.timeout(60):
        while True:
            found = [c for c in node.management.api("GET", "connections") if c["vhost"] == vhost]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.2)


def _tls_settings(pki: Pki, **extra: Any) -> dict[str, Any]:
    return {"tls_ca_file": pki.ca, **extra}


async def _frame_to_event_over_tls(
    node: PrivateBroker, vhost: str, pki: Pki, url: str | None = None, **client_tls: Any
) -> dict[str, Any]:
    """Publish one frame with FramePublisher, process it with a Worker and receive its
    event with ``reactions tail``, all three over amqps; the event's JSON. The
    connections are checked to be TLS ones and kept in ``_last_connections``."""
    url = url or _url(node, vhost)
    tls = _tls_settings(pki, **client_tls)
    worker = Worker(worker_settings(url, **tls), detector=ThumbsUpDetector())
    await worker.start()
    try:
        async with tailing(ReactionsSettings(amqp_url=url, **tls)) as lines:
            publisher = FramePublisher(PublisherSettings(amqp_url=url, **tls))
            async with publisher:
                await publisher.publish_and_confirm(make_frame(meeting="tls", participant="ana"))
                async with asyncio.timeout(60):
                    line = await lines.get()
                connections = await _connections(node, vhost, count=3)
    finally:
        await worker.stop()
    # publisher, worker, tail: every one of them on the TLS listener
    assert all(c["ssl"] for c in connections), [(c["name"], c["ssl"]) for c in connections]
    assert {c["port"] for c in connections} == {node.tls_port}
    _last_connections[node.nodename] = connections
    event: dict[str, Any] = json.loads(line)
    return event


# -- a frame's whole trip over TLS


async def test_a_frame_and_its_event_travel_over_tls_between_every_component(
    tls_node: PrivateBroker, tls_vhost: str, pki: Pki
) -> None:
    event = await _frame_to_event_over_tls(tls_node, tls_vhost, pki)
    assert (event["meeting_id"], event["participant_id"], event["label"]) == ("tls", "ana", "like")


async def test_optional_client_certificates_are_used_when_configured(
    tls_node: PrivateBroker, tls_vhost: str, pki: Pki
) -> None:
    # given the client certificate with an encrypted key and its passphrase
    event = await _frame_to_event_over_tls(
        tls_node,
        tls_vhost,
        pki,
        tls_cert_file=pki.client_cert,
        tls_key_file=pki.client_key_encrypted,
        tls_key_password=KEY_PASSWORD,
    )
    assert event["label"] == "like"


# -- verification is on and says what to fix


async def test_a_broker_certificate_from_another_ca_is_refused_with_a_clear_error(
    tls_node: PrivateBroker, tls_vhost: str, pki: Pki
) -> None:
    url = _url(tls_node, tls_vhost)
    publisher = FramePublisher(PublisherSettings(amqp_url=url, tls_ca_file=pki.other_ca))
    with pytest.raises(BrokerUnavailableError) as refused:
        await publisher.start()
    message = str(refused.value)
    print(message)
    assert "certificate" in message
    assert "MEMELEARNING_PUBLISHER_TLS_CA_FILE" in message
    assert f":{URL_PASSWORD}@" not in message

    worker = Worker(worker_settings(url, tls_ca_file=pki.other_ca), detector=ThumbsUpDetector())
    with pytest.raises(BrokerTlsError, match="MEMELEARNING_WORKER_TLS_CA_FILE"):
        await worker.start()
    await worker.stop()

    with pytest.raises(BrokerTlsError, match="MEMELEARNING_REACTIONS_TLS_CA_FILE"):
        async with tailing(ReactionsSettings(amqp_url=url, tls_ca_file=pki.other_ca)):
            pass


async def test_the_system_trust_store_does_not_trust_a_private_ca(
    tls_node: PrivateBroker, tls_vhost: str
) -> None:
    # amqps:// with no CA file: verification stays on (aiormq's no_verify_ssl is ignored)
    url = _url(tls_node, tls_vhost) + "?no_verify_ssl=1"
    with pytest.raises(BrokerUnavailableError, match="certificate"):
        await FramePublisher(PublisherSettings(amqp_url=url)).start()


async def test_the_broker_certificate_must_carry_the_expected_name(
    tls_node: PrivateBroker, tls_vhost: str, pki: Pki
) -> None:
    # the certificate names localhost and 127.0.0.1: both hosts verify
    for host in ("localhost", "127.0.0.1"):
        settings = PublisherSettings(amqp_url=_url(tls_node, tls_vhost, host), tls_ca_file=pki.ca)
        async with FramePublisher(settings):
            pass
    # a name it does not carry is refused, even with the right CA
    wrong = PublisherSettings(
        amqp_url=_url(tls_node, tls_vhost),
        tls_ca_file=pki.ca,
        tls_server_name="broker.example.invalid",
    )
    with pytest.raises(BrokerUnavailableError, match="MEMELEARNING_PUBLISHER_TLS_SERVER_NAME"):
        await FramePublisher(wrong).start()
    # and TLS_SERVER_NAME is what is checked, not the host connected to
    renamed = PublisherSettings(
        amqp_url=_url(tls_node, tls_vhost, "127.0.0.1"),
        tls_ca_file=pki.ca,
        tls_server_name="localhost",
    )
    async with FramePublisher(renamed):
        pass


# -- mutual TLS: the broker requires a client certificate


@pytest.fixture(scope="module")
def mtls_node(pki: Pki) -> Iterator[PrivateBroker]:
    """fail_if_no_peer_cert, and EXTERNAL authentication by the certificate's CN."""
    listener = TlsListener(
        certfile=pki.server_cert,
        keyfile=pki.server_key,
        cacertfile=pki.ca,
        verify_peer=True,
        fail_if_no_peer_cert=True,
    )
    node = PrivateBroker(
        tls=listener,
        extra_config=(
            "auth_mechanisms.1 = PLAIN\n"
            "auth_mechanisms.2 = EXTERNAL\n"
            "ssl_cert_login_from = common_name\n" + FAST_STATISTICS
        ),
    )
    # The node reads its plugin list at start; EXTERNAL lives in this plugin.
    (node.base_dir / "enabled_plugins").write_text(
        "[rabbitmq_management,rabbitmq_auth_mechanism_ssl].\n"
    )
    yield _start(node)
    node.close()


async def test_with_fail_if_no_peer_cert_a_client_without_certificate_is_refused(
    mtls_node: PrivateBroker, pki: Pki
) -> None:
    vhost = mtls_node.create_vhost("mtls")
    try:
        url = _url(mtls_node, vhost)
        publisher = FramePublisher(PublisherSettings(amqp_url=url, tls_ca_file=pki.ca))
        with pytest.raises(BrokerUnavailableError) as refused:
            await publisher.start()
        print(refused.value)
        assert "client certificate" in str(refused.value)
        assert "MEMELEARNING_PUBLISHER_TLS_CERT_FILE" in str(refused.value)
        # the same client with its certificate gets through, end to end
        event = await _frame_to_event_over_tls(
            mtls_node, vhost, pki, tls_cert_file=pki.client_cert, tls_key_file=pki.client_key
        )
        assert event["label"] == "like"
    finally:
        mtls_node.management.delete_vhost(vhost)


async def test_external_authentication_logs_in_as_the_certificate_common_name(
    mtls_node: PrivateBroker, pki: Pki
) -> None:
    vhost = mtls_node.create_vhost("external")
    api = mtls_node.management.api
    user = urllib.parse.quote(CLIENT_CN, safe="")
    # a user with no password at all: only its certificate can log it in
    api("PUT", f"users/{user}", {"password_hash": "", "tags": ""})
    api(
        "PUT",
        f"permissions/{urllib.parse.quote(vhost, safe='')}/{user}",
        {"configure": ".*", "write": ".*", "read": ".*"},
    )
    try:
        # no user name or password in the URL: the broker takes the certificate's CN
        external = (
            f"amqps://localhost:{mtls_node.tls_port}/{urllib.parse.quote(vhost, safe='')}"
            "?auth=external"
        )
        # every component logs in with its certificate alone
        event = await _frame_to_event_over_tls(
            mtls_node,
            vhost,
            pki,
            url=external,
            tls_cert_file=pki.client_cert,
            tls_key_file=pki.client_key,
        )
        assert event["label"] == "like"
        connections = _last_connections[mtls_node.nodename]
        assert {c["user"] for c in connections} == {CLIENT_CN}
        assert {c["auth_mechanism"] for c in connections} == {"EXTERNAL"}
    finally:
        mtls_node.management.delete_vhost(vhost)
        api("DELETE", f"users/{user}")


# -- settings: clear errors, never a secret


def test_a_missing_ca_file_is_named_by_its_variable(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(SettingsError) as bad:
        load_settings(
            WorkerSettings,
            amqp_url=f"amqps://u:{URL_PASSWORD}@localhost/",
            tls_ca_file=missing,
        )
    message = str(bad.value)
    assert "MEMELEARNING_WORKER_TLS_CA_FILE" in message
    assert "No such file" in message
    assert URL_PASSWORD not in message


def test_tls_files_with_an_amqp_url_are_refused_rather_than_sent_in_clear(pki: Pki) -> None:
    with pytest.raises(SettingsError, match=r"MEMELEARNING_PUBLISHER_TLS_CA_FILE.*amqps://"):
        load_settings(PublisherSettings, amqp_url="amqp://localhost/", tls_ca_file=pki.ca)


def test_a_key_without_a_certificate_is_refused(pki: Pki) -> None:
    with pytest.raises(ValidationError, match="MEMELEARNING_REACTIONS_TLS_CERT_FILE"):
        ReactionsSettings(amqp_url="amqps://localhost/", tls_key_file=pki.client_key)


def test_a_file_that_is_no_certificate_is_named_without_showing_its_content(
    tmp_path: Path, pki: Pki
) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot-a-certificate-SECRETISH\n")
    settings = WorkerSettings(amqp_url="amqps://localhost/", tls_ca_file=garbage)
    with pytest.raises(SettingsError) as bad:
        settings.amqp_ssl_context()
    assert "MEMELEARNING_WORKER_TLS_CA_FILE" in str(bad.value)
    assert "SECRETISH" not in str(bad.value)
    # a client certificate given as its own key
    crossed = WorkerSettings(
        amqp_url="amqps://localhost/",
        tls_ca_file=pki.ca,
        tls_cert_file=pki.client_cert,
        tls_key_file=pki.server_key,
    )
    with pytest.raises(SettingsError, match="MEMELEARNING_WORKER_TLS_KEY_FILE"):
        crossed.amqp_ssl_context()


def test_an_encrypted_key_asks_for_its_password_and_never_shows_it(pki: Pki) -> None:
    base: dict[str, Any] = {
        "amqp_url": "amqps://localhost/",
        "tls_ca_file": pki.ca,
        "tls_cert_file": pki.client_cert,
        "tls_key_file": pki.client_key_encrypted,
    }
    with pytest.raises(SettingsError, match="set MEMELEARNING_WORKER_TLS_KEY_PASSWORD"):
        WorkerSettings(**base).amqp_ssl_context()
    with pytest.raises(SettingsError) as wrong:
        WorkerSettings(**base, tls_key_password="not-" + KEY_PASSWORD).amqp_ssl_context()
    assert KEY_PASSWORD not in str(wrong.value)
    assert "MEMELEARNING_WORKER_TLS_KEY_PASSWORD" in str(wrong.value)
    context = WorkerSettings(**base, tls_key_password=KEY_PASSWORD).amqp_ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert KEY_PASSWORD not in repr(WorkerSettings(**base, tls_key_password=KEY_PASSWORD))


def test_plain_amqp_builds_no_context() -> None:
    assert WorkerSettings(amqp_url="amqp://localhost/").amqp_ssl_context() is None


# -- the command line


def test_the_cli_reports_a_port_without_tls_in_one_line(broker: Broker) -> None:
    # amqps:// to the shared broker's plain AMQP port: a mistake an operator can make
    plain = urllib.parse.urlsplit(broker.amqp_url)
    url = f"amqps://guest:{SECRET}@{plain.hostname}:{plain.port or 5672}/"
    result = subprocess.run(
        [sys.executable, "-m", "memelearning", "reactions", "tail"],
        env={**os.environ, "MEMELEARNING_REACTIONS_AMQP_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    print(result.stderr)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"memelearning reactions: cannot connect to RabbitMQ at amqps://guest:***@{plain.hostname}"
        f":{plain.port or 5672}/: TLS: the broker does not speak TLS"
    )
    assert SECRET not in result.stderr
