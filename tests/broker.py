"""A real RabbitMQ for tests: one fresh vhost per test, through the management API."""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.parse

from memelearning.management import ManagementClient

AMQP_URL = os.environ.get("MEMELEARNING_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT_URL = os.environ.get("MEMELEARNING_TEST_MANAGEMENT_URL", "http://127.0.0.1:15672")


class Broker(ManagementClient):
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
            self.overview()
        except (OSError, urllib.error.URLError) as exc:
            raise RuntimeError(
                f"the RabbitMQ management API does not answer at {self.management_url} ({exc}); "
                "enable it: rabbitmq-plugins enable rabbitmq_management"
            ) from exc

    def create_vhost(self, prefix: str = "test", description: str = "memelearning test") -> str:
        return super().create_vhost(prefix, description)

    def declare_events_exchange(self, vhost: str) -> None:
        """The events exchange, declared as a worker declares it at start. Its owner is
        the worker; reactions-side subscribers only find it (passively), so a test that
        runs them without a worker first needs it there."""
        from reactions.subscription import EVENTS_EXCHANGE_DURABLE, EVENTS_EXCHANGE_TYPE
        from worker.events import EVENTS_EXCHANGE

        path = "/".join(urllib.parse.quote(part, safe="") for part in (vhost, EVENTS_EXCHANGE))
        self.api(
            "PUT",
            f"exchanges/{path}",
            {"type": EVENTS_EXCHANGE_TYPE.value, "durable": EVENTS_EXCHANGE_DURABLE},
        )


BROKER = Broker(AMQP_URL, MANAGEMENT_URL)
