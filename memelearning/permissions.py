"""The least RabbitMQ permissions each component needs, as regular expressions for
``rabbitmqctl set_permissions`` (configure, write, read), worked out from what each one
declares, binds, publishes and consumes. docs/security.md explains every entry;
tests/test_least_privilege.py checks that each component works with exactly these
and is refused what it must not do.

RabbitMQ matches these against resource *names*, whatever their kind, so no queue
shares a name with an exchange: until 2026-11-29 the frames queue was called
``memelearning.frames`` like the frames exchange, and the worker's grant to bind that
queue also let it publish frames (see the notes in docs/security.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from publisher.protocol import FRAMES_EXCHANGE
from worker.events import EVENTS_EXCHANGE
from worker.models_settings import ModelsSettings
from worker.settings import WorkerSettings
from worker.topology import moves_exchange_name, quarantine_queue_name

# RabbitMQ's name for the default ("") exchange in permission checks. No component is
# granted write on it: it reaches every queue of the vhost by name.
DEFAULT_EXCHANGE: Final = "amq.default"
# The names aio-pika's robust channels give "server-named" queues: it picks them itself
# (amq_<uuid4 hex>) so that it can declare them again after a reconnect.
PRIVATE_QUEUES: Final = r"amq_[0-9a-f]{32}"
# An empty pattern grants nothing.
NOTHING: Final = ""


@dataclass(frozen=True)
class Permissions:
    configure: str
    write: str
    read: str

    def as_json(self) -> dict[str, str]:
        """The body of the management API's ``PUT /api/permissions/{vhost}/{user}``."""
        return {"configure": self.configure, "write": self.write, "read": self.read}


def exactly(names: Iterable[str], *patterns: str) -> str:
    """A pattern matching exactly these names (and these extra patterns)."""
    alternatives = sorted({re.escape(name) for name in names}) + list(patterns)
    return f"^({'|'.join(alternatives)})$" if alternatives else NOTHING


def publisher_permissions() -> Permissions:
    """Publish frames to the frames exchange and nothing else. Run the publisher with
    ``MEMELEARNING_PUBLISHER_DECLARE_EXCHANGE=false``: configure on the exchange would
    also allow deleting it (the worker, which binds its queue to it, declares it)."""
    return Permissions(configure=NOTHING, write=exactly([FRAMES_EXCHANGE]), read=NOTHING)


def control_queues(exchange: str) -> str:
    """The names of the workers' own queues on the control exchange
    (worker.control.control_queue_name: ``<exchange>.<worker id>.<random>``)."""
    return re.escape(exchange) + r"\..+"


def worker_permissions(settings: WorkerSettings | None = None) -> Permissions:
    """Declare its topology (worker/topology.py), consume frames and triage, publish
    events and move poison frames to the dead-letter queue; and, unless
    ``control_exchange`` is empty, declare the control exchange and a queue of its own
    bound to it, and consume that queue (worker/control.py)."""
    s = settings if settings is not None else WorkerSettings()
    control = [s.control_exchange] if s.control_exchange else []
    own_queue = [control_queues(s.control_exchange)] if s.control_exchange else []
    return Permissions(
        # Every exchange and queue it declares.
        configure=exactly(
            [
                FRAMES_EXCHANGE,
                s.queue,
                quarantine_queue_name(s),
                moves_exchange_name(s),
                s.dead_letter_exchange,
                s.triage_queue,
                s.dead_letter_queue,
                EVENTS_EXCHANGE,
                *control,
            ],
            *own_queue,
        ),
        write=exactly(
            [
                # queue.bind needs write on the queue: frames, triage, quarantine and
                # dead-letter queues.
                s.queue,
                s.triage_queue,
                quarantine_queue_name(s),
                s.dead_letter_queue,
                # Declaring a queue with x-dead-letter-exchange needs write on the DLX.
                s.dead_letter_exchange,
                # Reaction events.
                EVENTS_EXCHANGE,
                # Frames go to the quarantine and dead-letter queues through their own
                # exchange: no write on the default exchange, which reaches any queue.
                moves_exchange_name(s),
            ],
            # queue.bind needs write on its control queue.
            *own_queue,
        ),
        read=exactly(
            [
                # queue.bind needs read on the exchange: frames exchange, DLX, moves.
                FRAMES_EXCHANGE,
                s.dead_letter_exchange,
                moves_exchange_name(s),
                # Consuming; and declaring the frames queue with a DLX needs read on it.
                s.queue,
                quarantine_queue_name(s),
                s.triage_queue,
                # Binding its control queue to the control exchange.
                *control,
            ],
            # Consuming its control queue.
            *own_queue,
        ),
    )


def models_permissions(settings: ModelsSettings | None = None) -> Permissions:
    """``memelearning models promote|rollback|notify``: declare the control exchange
    (so it may run before any worker) and publish to it; nothing else."""
    s = settings if settings is not None else ModelsSettings()
    return Permissions(
        configure=exactly([s.control_exchange]),
        write=exactly([s.control_exchange]),
        read=NOTHING,
    )


def reactions_permissions() -> Permissions:
    """Declare its own exclusive, auto-delete queue (named by aio-pika), bind it to the
    events exchange (declared passively: the worker owns it, and configure on it would
    let this user delete it) and consume from that queue. Also right for ``memelearning
    reactions tail`` and the meeting simulator, whose page then shows no video
    (docs/security.md)."""
    return Permissions(
        configure=exactly([], PRIVATE_QUEUES),
        # queue.bind needs write on the queue.
        write=exactly([], PRIVATE_QUEUES),
        # queue.bind needs read on the exchange; consuming needs read on the queue.
        read=exactly([EVENTS_EXCHANGE], PRIVATE_QUEUES),
    )


# The autoscaler (KEDA's RabbitMQ scaler over the management API) reads queue depth
# over HTTP: its user has the `management` tag and a permissions entry on the vhost
# (without one the vhost is invisible to it) that grants nothing over AMQP.
KEDA_PERMISSIONS: Final = Permissions(configure=NOTHING, write=NOTHING, read=NOTHING)


def component_permissions(worker: WorkerSettings | None = None) -> dict[str, Permissions]:
    return {
        "publisher": publisher_permissions(),
        "worker": worker_permissions(worker),
        "reactions": reactions_permissions(),
        "models": models_permissions(),
    }
