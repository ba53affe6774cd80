"""A small client for the RabbitMQ management HTTP API: the calls tests, benchmarks
and operations scripts need (throw-away vhosts, queue state, the broker's version).

The standard library is enough for a handful of JSON calls; the management API takes
the same credentials as the AMQP URL.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ManagementClient:
    amqp_url: str
    management_url: str
    timeout_s: float = 10.0

    @property
    def user(self) -> str:
        return urllib.parse.unquote(urllib.parse.urlsplit(self.amqp_url).username or "guest")

    def api(self, method: str, path: str, body: Any = None) -> Any:
        password = urllib.parse.unquote(urllib.parse.urlsplit(self.amqp_url).password or "guest")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.management_url.rstrip("/") + "/api/" + path, data=data, method=method
        )
        token = base64.b64encode(f"{self.user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def overview(self) -> dict[str, Any]:
        result: dict[str, Any] = self.api("GET", "overview")
        return result

    def create_vhost(self, prefix: str, description: str = "memelearning") -> str:
        """A new vhost named ``<prefix>-<random>``, with full rights for our user."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        quoted = urllib.parse.quote(name, safe="")
        self.api("PUT", f"vhosts/{quoted}", {"description": description})
        self.api(
            "PUT",
            f"permissions/{quoted}/{urllib.parse.quote(self.user, safe='')}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )
        return name

    def delete_vhost(self, name: str) -> None:
        try:
            self.api("DELETE", f"vhosts/{urllib.parse.quote(name, safe='')}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise

    def url_for(self, vhost: str) -> str:
        """The AMQP URL of ``vhost`` on the same broker, with the same credentials."""
        parts = urllib.parse.urlsplit(self.amqp_url)
        path = "/" + urllib.parse.quote(vhost, safe="")
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))

    def queue(self, vhost: str, name: str) -> dict[str, Any]:
        """The management API's view of a queue (its statistics lag by seconds)."""
        path = f"queues/{urllib.parse.quote(vhost, safe='')}/{urllib.parse.quote(name, safe='')}"
        result: dict[str, Any] = self.api("GET", path)
        return result

    def create_user(self, name: str, password: str, tags: str = "") -> None:
        """Create (or update) a broker user; ``tags=""`` means no management access."""
        self.api(
            "PUT",
            f"users/{urllib.parse.quote(name, safe='')}",
            {"password": password, "tags": tags},
        )

    def delete_user(self, name: str) -> None:
        try:
            self.api("DELETE", f"users/{urllib.parse.quote(name, safe='')}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise

    def set_permissions(
        self, vhost: str, user: str, *, configure: str, write: str, read: str
    ) -> None:
        """``rabbitmqctl set_permissions -p VHOST USER CONFIGURE WRITE READ``."""
        path = (
            f"permissions/{urllib.parse.quote(vhost, safe='')}/{urllib.parse.quote(user, safe='')}"
        )
        self.api("PUT", path, {"configure": configure, "write": write, "read": read})

    def url_as(self, vhost: str, user: str, password: str) -> str:
        """The AMQP URL of ``vhost`` on the same broker, logged in as ``user``."""
        parts = urllib.parse.urlsplit(self.url_for(vhost))
        host = parts.hostname or "127.0.0.1"
        netloc = (
            f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}@{host}"
        )
        if parts.port:
            netloc += f":{parts.port}"
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
