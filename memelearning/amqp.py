"""Broker connection settings every process shares: the URL and TLS (``amqps://``).

Each process's settings class inherits :class:`AmqpSettings`, so the variables are
``MEMELEARNING_<COMPONENT>_AMQP_URL``, ``…_TLS_CA_FILE`` and so on. An ``amqps://`` URL
always verifies the broker: its certificate must chain to ``TLS_CA_FILE`` (or, unset,
the system's trust store) and carry the URL's host name (or ``TLS_SERVER_NAME``).
There is no switch to turn verification off; aiormq's ``?no_verify_ssl=1`` URL
parameter is ignored because the context built here replaces aiormq's own.

Every process connects through :func:`connect_robust`: a broker that is not there, or
refuses the login, the virtual host or the TLS handshake, is a
:class:`BrokerConnectError` whose message is one line naming the URL (password hidden)
and what to check, and the connection's outages are logged once each
(:mod:`memelearning.outages`).

A RabbitMQ cluster has several addresses (``…_AMQP_HOSTS``, beside the URL's own host):
a connection starts on the first that answers, and each reconnect attempt after a lost
connection or a failed attempt goes to the next one, so a client leaves a dead or
frozen node for a live one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import re
import shlex
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final, Self
from urllib.parse import unquote, urlsplit, urlunsplit

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractRobustConnection
from pamqp.common import FieldTable
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from yarl import URL

from memelearning.amqp_decode import tolerate_non_utf8_short_strings
from memelearning.logs import redact_url
from memelearning.outages import watch_outages
from memelearning.settings import DEFAULT_AMQP_URL, AmqpUrl, SettingsError, variable_name

# Every process that talks to the broker imports this module (through its settings):
# one hostile message must not close its connection (see memelearning/amqp_decode.py).
tolerate_non_utf8_short_strings()

_TLS_FIELDS: Final = ("tls_ca_file", "tls_cert_file", "tls_key_file", "tls_server_name")
# Host names and IP addresses as they may appear in a certificate.
_SERVER_NAME_PATTERN: Final = r"^[A-Za-z0-9*]([A-Za-z0-9.:*-]{0,252})?$"
# host or host:port (an IPv6 address in brackets).
_HOST_PATTERN: Final = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,252}))(:[0-9]{1,5})?$"
# How long one connect attempt (TCP, TLS and the AMQP handshake) may take. Without a
# bound, an attempt on a node that accepts TCP but is frozen (SIGSTOP, a stuck VM)
# waits for ever and the client never tries the next address.
CONNECT_TIMEOUT_S: Final = 5.0


class BrokerConnectError(ConnectionError):
    """Connecting to the broker failed: nothing answers, the login or the virtual host
    was refused, or TLS failed. The message is one line that names the URL (password
    hidden) and what to check; the ``memelearning`` command prints it and exits with
    status 1, without a traceback."""


class BrokerTlsError(BrokerConnectError):
    """A TLS handshake with the broker failed; the message says which setting to check."""


class AmqpSettings(BaseSettings):
    """Broker URL and TLS settings; a base class for each process's settings.

    Each setting's docstring is its documentation (``use_attribute_docstrings``):
    ``memelearning settings`` turns them into docs/settings.md."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True)

    amqp_url: AmqpUrl = DEFAULT_AMQP_URL
    """The broker: `amqp://user:password@host:port/vhost` (`amqps://` for TLS).
    Credentials are only read from the environment; logs show the URL without its
    password."""
    amqp_hosts: Annotated[list[str], NoDecode] = []
    """More addresses of the same RabbitMQ cluster, `host:port` (port 5672, 5671 for
    `amqps://`, when left out), comma-separated or a JSON list: tried in turn after the
    URL's host when connecting, and after a lost connection; the URL's user, password,
    vhost and parameters apply to each."""
    tls_ca_file: Path | None = None
    """PEM bundle of the CA(s) that signed the broker's certificate; unset = the
    system's trust store."""
    tls_cert_file: Path | None = None
    """Client certificate (PEM) for brokers that ask for one (mutual TLS); the file may
    hold the private key too, or set `TLS_KEY_FILE`."""
    tls_key_file: Path | None = None
    """The client certificate's private key (PEM), when it is not in `TLS_CERT_FILE`."""
    tls_key_password: SecretStr | None = None
    """Only for an encrypted private key; never logged."""
    tls_server_name: str | None = Field(default=None, pattern=_SERVER_NAME_PATTERN)
    """The name the broker's certificate must carry when it is not the URL's host (e.g.
    connecting by IP address or through a tunnel)."""

    @field_validator("amqp_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [host.strip() for host in value.split(",") if host.strip()]
        return value

    @field_validator("amqp_hosts")
    @classmethod
    def _host_addresses(cls, value: list[str]) -> list[str]:
        bad = [host for host in value if not re.match(_HOST_PATTERN, host)]
        if bad:
            raise ValueError(f"not host or host:port: {', '.join(map(repr, bad))}")
        return value

    @field_validator("tls_ca_file", "tls_cert_file", "tls_key_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            with value.open("rb") as f:
                f.read(1)
        except OSError as exc:
            # The path is configuration, not a secret; the file's content is never shown.
            raise ValueError(f"cannot read {value}: {exc.strerror or exc}") from None
        return value

    @model_validator(mode="after")
    def _tls_needs_amqps(self) -> Self:
        var = self.variable
        if self.amqp_url.scheme != "amqps":
            given = [var(name) for name in _TLS_FIELDS if getattr(self, name) is not None]
            if given:
                # Silently sending credentials and frames in clear text is worse than failing.
                raise ValueError(
                    f"{', '.join(given)} set but {var('amqp_url')} is not amqps://; "
                    "use an amqps:// URL for TLS"
                )
        if self.tls_key_file is not None and self.tls_cert_file is None:
            raise ValueError(f"{var('tls_key_file')} is set without {var('tls_cert_file')}")
        return self

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable that sets ``field`` (``MEMELEARNING_WORKER_…``)."""
        return variable_name(cls, field)

    @property
    def uses_tls(self) -> bool:
        return self.amqp_url.scheme == "amqps"

    def amqp_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for the broker connection (None for ``amqp://``).
        Raises :class:`~memelearning.settings.SettingsError` naming the variable whose
        file cannot be used."""
        if not self.uses_tls:
            return None
        return build_ssl_context(
            ca_file=self.tls_ca_file,
            cert_file=self.tls_cert_file,
            key_file=self.tls_key_file,
            key_password=self.tls_key_password,
            server_name=self.tls_server_name,
            variable=self.variable,
        )

    def explain_connect_error(self, exc: BaseException) -> str | None:
        """What to check when connecting failed in the TLS handshake; None otherwise."""
        if not self.uses_tls:
            return None
        return _explain_tls_failure(exc, self.variable, self.tls_cert_file is not None)

    async def connect_robust(
        self, url: str | None = None, *, client_properties: FieldTable | None = None
    ) -> AbstractRobustConnection:
        """:func:`connect_robust` with this TLS context (``url`` defaults to
        ``amqp_url``; its query parameters still apply). Failing to connect raises
        :class:`BrokerConnectError` (:class:`BrokerTlsError` for TLS) naming the variable
        to check."""
        return await connect_robust(
            url or str(self.amqp_url),
            ssl_context=self.amqp_ssl_context(),
            client_properties=client_properties,
            setting=self.variable("amqp_url"),
            explain_tls=self.explain_connect_error,
            other_hosts=self.amqp_hosts,
        )


class _ClosedOnFailure(aio_pika.RobustConnection):
    """A robust connection that closes itself when its first connect fails.

    aio-pika's ``Connection.__del__`` schedules ``close()`` for a connection nobody
    closed; when a failed connection is collected outside a running event loop, that
    ``close()`` is a coroutine never awaited, and its warning lands on whatever runs
    then (it failed a TLS test's teardown)."""

    async def connect(self, timeout: float | int | None = None) -> None:
        try:
            await super().connect(timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.close()
            raise


CONNECT_HOOK: Final = "_RobustConnection__connect_transport"
"""The private method of aio-pika's RobustConnection (9.4-10.x) that makes each
connect attempt: where the cluster connection moves on to the next address."""


def rotates_addresses() -> bool:
    """Whether the installed aio-pika has the hook that moves reconnects round a
    cluster's addresses."""
    return callable(getattr(aio_pika.RobustConnection, CONNECT_HOOK, None))


class _ClusterConnection(_ClosedOnFailure):
    """A robust connection that moves to the next of a cluster's addresses at each
    connect attempt after the first, round and round: a lost node is left for the next
    one, and an address that does not answer is skipped at the next attempt."""

    # The first is the address connected to first.
    addresses: tuple[URL, ...] = ()
    _at = 0
    _attempts = 0

    @property
    def address(self) -> str:
        """``host:port`` of the node this connection is (or is trying to get) on."""
        return f"{self.url.host}:{self.url.port}"

    # aio-pika makes each (re)connect attempt through this private method of
    # RobustConnection (name-mangled; CONNECT_HOOK); it offers no public hook between
    # attempts. connect_robust refuses several addresses where it is missing.
    async def _RobustConnection__connect_transport(self) -> None:
        if self._attempts and len(self.addresses) > 1:
            self._at = (self._at + 1) % len(self.addresses)
            self.url = self.addresses[self._at]
        self._attempts += 1
        await super()._RobustConnection__connect_transport()  # type: ignore[misc]


def cluster_urls(url: str, other_hosts: Sequence[str]) -> list[str]:
    """``url``, then ``url`` with each of ``other_hosts`` as its host and port."""
    parts = urlsplit(url)
    default_port = 5671 if parts.scheme == "amqps" else 5672
    credentials = parts.netloc.rpartition("@")[0]
    urls = [url]
    for host in other_hosts:
        address = host if ":" in host.rsplit("]", 1)[-1] else f"{host}:{default_port}"
        netloc = f"{credentials}@{address}" if credentials else address
        urls.append(urlunsplit(parts._replace(netloc=netloc)))
    return urls


async def connect_robust(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    client_properties: FieldTable | None = None,
    setting: str = "the broker URL",
    explain_tls: Callable[[BaseException], str | None] | None = None,
    other_hosts: Sequence[str] = (),
) -> AbstractRobustConnection:
    """``aio_pika.connect_robust``, with a failure to connect turned into a
    :class:`BrokerConnectError` that says what to check (``setting`` names where the URL
    comes from), and the connection's outages logged once each
    (:func:`memelearning.outages.watch_outages`) rather than at every reconnect attempt.

    ``other_hosts`` (``host:port``) are more nodes of the same cluster: the first
    address that answers is used, and reconnect attempts go round all of them."""
    urls = cluster_urls(url, other_hosts)
    if len(urls) > 1 and not rotates_addresses():
        raise BrokerConnectError(
            f"aio-pika {aio_pika.__version__} has no {CONNECT_HOOK} to move a lost "
            "connection to another of several broker addresses: install aio-pika 9.4-10.x "
            "(pyproject.toml's pin) or give one address"
        )
    connection: _ClusterConnection | None = None
    first_failure: BaseException | None = None
    for i, address in enumerate(urls):
        try:
            connection = await aio_pika.connect_robust(
                address,
                ssl_context=ssl_context,
                client_properties=client_properties,
                connection_class=_ClusterConnection,
                timeout=CONNECT_TIMEOUT_S,
            )
        except (aiormq.exceptions.AMQPError, OSError) as exc:
            hint = explain_tls(exc) if explain_tls is not None else None
            if hint is not None:
                shown = redact_url(address)
                raise BrokerTlsError(f"cannot connect to RabbitMQ at {shown}: {hint}") from None
            first_failure = first_failure or exc
            continue
        connection.addresses = tuple(URL(u) for u in urls[i:] + urls[:i])
        break
    if connection is None:
        assert first_failure is not None
        message = describe_connect_failure(first_failure, url, setting)
        if len(urls) > 1:
            message += f" (the {len(urls) - 1} other address(es) did not answer either)"
        raise BrokerConnectError(message)

    def diagnose(exc: BaseException) -> tuple[str, bool]:
        hint = explain_tls(exc) if explain_tls is not None else None
        if hint is not None:
            return hint, True
        failure = diagnose_connect_failure(exc, url, setting)
        return f"{failure.reason}; {failure.fix}", failure.lasting

    shown = redact_url(url)
    if len(urls) > 1:
        shown += f" (+{len(urls) - 1} more address(es))"
    watch_outages(connection, shown, diagnose)
    return connection


@dataclass(frozen=True, slots=True)
class ConnectFailure:
    """Why connecting to the broker failed, for a person."""

    reason: str
    """What happened, e.g. "connection refused: nothing listens on 127.0.0.1:1"."""
    fix: str
    """What to check or do about it."""
    lasting: bool
    """Whether it is configuration that retrying will not fix by itself (a refused login
    or virtual host), rather than a broker that is not there (yet)."""


def describe_connect_failure(exc: BaseException, url: str, setting: str) -> str:
    """One line for a failure to connect to the broker at ``url``: the URL with its
    password hidden, what happened and what to check (``setting`` names the variable
    that holds the URL)."""
    failure = diagnose_connect_failure(exc, url, setting)
    return f"cannot connect to RabbitMQ at {redact_url(url)}: {failure.reason}; {failure.fix}"


def diagnose_connect_failure(exc: BaseException, url: str, setting: str) -> ConnectFailure:
    """What went wrong connecting to ``url``, from aiormq's exception (which carries
    little: an unknown virtual host arrives as "Expected one of ['Connection.OpenOk']")."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    user = unquote(parts.username or "guest")
    # As aiormq reads it: the path without its leading slash, "/" when empty.
    vhost = unquote(parts.path[1:]) or "/"
    text = _exception_text(exc, parts.password)
    cause = exc.__cause__
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
        local = host in ("127.0.0.1", "::1", "localhost")
        guest = (
            "; RabbitMQ lets the guest user log in from localhost only"
            if user == "guest" and not local
            else ""
        )
        return ConnectFailure(
            f"the broker refused the login of user {user!r} ({_first_word(text)})",
            f"check the user name and password in {setting}{guest}",
            lasting=True,
        )
    if isinstance(exc, aiormq.exceptions.AuthenticationError):
        return ConnectFailure(
            f"the broker does not offer the authentication mechanism asked for ({text})",
            f"remove or fix the URL's auth= parameter in {setting}",
            lasting=True,
        )
    if _vhost_refused(exc):
        command = (
            f"rabbitmqctl add_vhost {shlex.quote(vhost)} && rabbitmqctl set_permissions "
            f"-p {shlex.quote(vhost)} {shlex.quote(user)} '.*' '.*' '.*'"
        )
        return ConnectFailure(
            f"virtual host {vhost!r} does not exist or user {user!r} may not use it",
            f"fix the URL's path in {setting}, or create it: {command}",
            lasting=True,
        )
    if isinstance(exc, aiormq.exceptions.ConnectionClosed):
        return ConnectFailure(
            f"the broker closed the connection ({text})",
            "see the broker's log for why",
            lasting=False,
        )
    if isinstance(cause, ConnectionRefusedError) or _errno(exc) == errno.ECONNREFUSED:
        return ConnectFailure(
            f"connection refused: nothing listens on {host}:{port}",
            f"start RabbitMQ there, or fix the host and port in {setting}",
            lasting=False,
        )
    if isinstance(cause, socket.gaierror) or isinstance(exc, socket.gaierror):
        return ConnectFailure(
            f"cannot resolve the host name {host!r} ({_strerror(cause or exc)})",
            f"fix the host in {setting}",
            lasting=False,
        )
    if isinstance(cause, TimeoutError) or isinstance(exc, TimeoutError):
        return ConnectFailure(
            f"no answer from {host}:{port} (timed out)",
            f"check that the broker is up and reachable from here, or fix the host and port "
            f"in {setting}",
            lasting=False,
        )
    if isinstance(cause, EOFError) or isinstance(exc, aiormq.exceptions.IncompatibleProtocolError):
        return ConnectFailure(
            f"{host}:{port} closed the connection during the AMQP handshake",
            f"check that it is RabbitMQ's AMQP port (5672; 5671 for amqps://) in {setting} "
            "and that the broker is up",
            lasting=False,
        )
    return ConnectFailure(
        text if isinstance(exc, OSError) else f"{type(exc).__name__}: {text}",
        f"check that the broker is up and reachable, and the host and port in {setting}",
        lasting=False,
    )


def _vhost_refused(exc: BaseException) -> bool:
    # RabbitMQ answers connection.open for a vhost that does not exist (530 NOT_ALLOWED)
    # or that the user may not use (403) with connection.close, which aiormq 7 reports
    # as an unexpected frame, without the broker's reply text.
    if isinstance(exc, aiormq.exceptions.InvalidFrameError):
        return "Connection.OpenOk" in str(exc)
    if isinstance(exc, aiormq.exceptions.ConnectionClosed):
        return bool(exc.args) and exc.args[0] == 530
    return False


def _exception_text(exc: BaseException, password: str | None) -> str:
    # aiormq keeps the wrapped OSError's (errno, message) as its args.
    args = [a for a in exc.args if not isinstance(a, int)]
    text = " ".join(str(a) for a in args) or str(exc) or type(exc).__name__
    text = _first_line(text)
    if password:
        for secret in (password, unquote(password)):
            text = text.replace(secret, "***")
    return text


def _errno(exc: BaseException) -> int | None:
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, int) else None


def _strerror(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _exception_text(exc, None)


def _first_word(text: str) -> str:
    # "ACCESS_REFUSED - Login was refused using …": the code says it all.
    return text.split(" - ", 1)[0]


class _ServerNameContext(ssl.SSLContext):
    """Verifies the peer against a fixed name instead of the host asyncio connects to;
    asyncio passes the connect host to ``wrap_bio`` and offers no other hook."""

    server_name: str

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, self.server_name, session)


def build_ssl_context(
    *,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    key_password: SecretStr | None = None,
    server_name: str | None = None,
    variable: Callable[[str], str] = str.upper,
) -> ssl.SSLContext:
    """A client context that verifies the broker's certificate and host name (TLS 1.2
    or newer). ``variable`` turns a field name into the variable named in errors."""
    context: ssl.SSLContext
    if server_name:
        named = _ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)
        named.server_name = server_name
        context = named
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # PROTOCOL_TLS_CLIENT already means CERT_REQUIRED + check_hostname; said again
    # so that no later edit can weaken it by accident.
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(
                f"{variable('tls_ca_file')}: cannot load CA certificates from {ca_file}: "
                f"{_reason(exc)}"
            ) from None
    if cert_file is not None:
        asked: list[bool] = []

        def password() -> bytes:
            asked.append(True)
            # Never let OpenSSL prompt on a terminal: a service has none.
            return key_password.get_secret_value().encode() if key_password else b""

        try:
            context.load_cert_chain(cert_file, key_file, password=password)
        except (OSError, ssl.SSLError) as exc:
            where = variable("tls_cert_file")
            if key_file is not None:
                where += f" / {variable('tls_key_file')}"
            hint = ""
            if asked and key_password is None:
                hint = f"; the key is encrypted: set {variable('tls_key_password')}"
            elif asked:
                hint = f"; is {variable('tls_key_password')} right?"
            raise SettingsError(
                f"{where}: cannot load the client certificate and key "
                f"({cert_file}{', ' + str(key_file) if key_file else ''}): {_reason(exc)}{hint}"
            ) from None
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _explain_tls_failure(
    exc: BaseException, variable: Callable[[str], str], has_client_cert: bool
) -> str | None:
    # aiormq wraps the transport's OSError in AMQPConnectionError, keeping only its args.
    # (errno, message) from the SSL error: the errno adds nothing for a person.
    args = [a for a in getattr(exc, "args", ()) if not isinstance(a, int)]
    text = " ".join(str(arg) for arg in args) or str(exc)
    upper = text.upper()
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in upper:
        return (
            f"TLS: the broker's certificate was not accepted ({_first_line(text)}); check that "
            f"{variable('tls_ca_file')} holds the CA that signed it and that it is issued to "
            f"the URL's host (or {variable('tls_server_name')})"
        )
    if "CERTIFICATE_REQUIRED" in upper or "ALERT_CERTIFICATE_REQUIRED" in upper:
        return (
            f"TLS: the broker requires a client certificate ({_first_line(text)}); set "
            f"{variable('tls_cert_file')} and {variable('tls_key_file')}"
        )
    if "WRONG_VERSION_NUMBER" in upper:
        return (
            f"TLS: the broker does not speak TLS on this port ({_first_line(text)}); "
            "amqps:// needs the broker's TLS listener (usually port 5671)"
        )
    if "CONNECTION RESET" in upper or "CONNECTIONRESETERROR" in upper:
        # With TLS 1.3 the client finishes its side of the handshake before the broker
        # checks the client certificate; a broker that wants one then just drops the
        # connection, and its alert is usually lost with it.
        if not has_client_cert:
            return (
                f"TLS: the broker closed the connection during the handshake "
                f"({_first_line(text)}); it probably requires a client certificate: set "
                f"{variable('tls_cert_file')} and {variable('tls_key_file')}"
            )
        return (
            f"TLS: the broker closed the connection during the handshake "
            f"({_first_line(text)}); check that it accepts the client certificate in "
            f"{variable('tls_cert_file')} (signed by a CA it trusts, not expired)"
        )
    if "SSL" in upper or "TLS" in upper or isinstance(exc, ssl.SSLError):
        return f"TLS handshake with the broker failed: {_first_line(text)}"
    return None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no details"
