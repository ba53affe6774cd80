"""A real RabbitMQ for tests: one fresh vhost per test, through the management API."""

from __future__ import annotations

import base64
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

AMQP_URL = os.environ.get("MEMELEARNING_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT_URL = os.environ.get("MEMELEARNING_TEST_MANAGEMENT_URL", "http://127.0.0.1:15672")


@dataclass(frozen=True)
class Broker:
    amqp_url: str
    management_url: str

    @property
    def _user(self) -> tuple[str, str]:
        parts = urllib.parse.urlsplit(self.amqp_url)
        return parts.username or "guest", parts.password or "guest"

    def api(self, method: str, path: str, body: Any = None) -> Any:
        user, password = self._user
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.management_url.rstrip("/") + "/api/" + path, data=data, method=method
        )
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def check(self) -> None:
        """Raise with a clear message if the broker or its management API is not up."""
        parts = urllib.parse.urlsplit(self.amqp_url)
        try:
            socket.create_connection((parts.hostname, parts.port or 5672), timeout=3).close()
        except OSError as exc:
            raise RuntimeError(
                f"no RabbitMQ answers at {parts.hostname}:{parts.port or 5672} ({exc}); "
                "run scripts/test.sh, which starts one"
            ) from exc
        try:
            self.api("GET", "overview")
        except (OSError, urllib.error.URLError) as exc:
            raise RuntimeError(
                f"the RabbitMQ management API does not answer at {self.management_url} ({exc}); "
                "enable it: rabbitmq-plugins enable rabbitmq_management"
            ) from exc

    def create_vhost(self) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        quoted = urllib.parse.quote(name, safe="")
        self.api("PUT", f"vhosts/{quoted}", {"description": "memelearning test"})
        user, _ = self._user
        self.api(
            "PUT",
            f"permissions/{quoted}/{urllib.parse.quote(user, safe='')}",
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
        parts = urllib.parse.urlsplit(self.amqp_url)
        return urllib.parse.urlunsplit(
            (parts.scheme, parts.netloc, "/" + urllib.parse.quote(vhost, safe=""), parts.query, "")
        )

    def queue(self, vhost: str, name: str) -> dict[str, Any]:
        path = f"queues/{urllib.parse.quote(vhost, safe='')}/{urllib.parse.quote(name, safe='')}"
        result: dict[str, Any] = self.api("GET", path)
        return result


BROKER = Broker(AMQP_URL, MANAGEMENT_URL)
