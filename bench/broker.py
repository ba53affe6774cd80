"""The few RabbitMQ management API calls the benchmark needs: a throw-away vhost per
run and the broker's version."""

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
class Management:
    amqp_url: str
    management_url: str

    def api(self, method: str, path: str, body: Any = None) -> Any:
        parts = urllib.parse.urlsplit(self.amqp_url)
        # The management API takes the same credentials as AMQP.
        user = urllib.parse.unquote(parts.username or "guest")
        password = urllib.parse.unquote(parts.password or "guest")
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

    def overview(self) -> dict[str, Any]:
        result: dict[str, Any] = self.api("GET", "overview")
        return result

    def create_vhost(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        quoted = urllib.parse.quote(name, safe="")
        self.api("PUT", f"vhosts/{quoted}", {"description": "memelearning benchmark"})
        user = urllib.parse.unquote(urllib.parse.urlsplit(self.amqp_url).username or "guest")
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
        path = "/" + urllib.parse.quote(vhost, safe="")
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
