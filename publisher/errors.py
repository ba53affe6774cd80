"""What can go wrong when publishing frames. Every failure to get a frame to the broker
is one of these, so a caller can catch :class:`PublishError` and know no frame was lost
without a trace."""

from __future__ import annotations

from publisher.protocol import FRAMES_EXCHANGE, Frame


class PublishError(Exception):
    """A frame (or the publisher itself) could not be published. ``frame`` is the frame
    concerned, when there is one."""

    def __init__(self, message: str, frame: Frame | None = None) -> None:
        super().__init__(message)
        self.frame = frame


class BrokerUnavailableError(PublishError):
    """The publisher could not connect to the broker at start-up."""


class FrameNackedError(PublishError):
    """The broker refused the frame (``basic.nack``), typically because the worker queue
    is full and set to reject new frames."""


class FrameUnroutableError(PublishError):
    """No queue received the frame: no worker has declared and bound its queue to the
    frames exchange yet (or, when the publisher does not declare it, the exchange does
    not exist yet)."""


class FrameRefusedError(PublishError):
    """The broker closed the channel over this frame for a reason a retry cannot fix
    (no write permission on the exchange, an exchange declared with other properties)."""


class FrameConfirmTimeoutError(PublishError):
    """The broker neither confirmed nor refused the frame in time."""


class FrameExpiredError(PublishError):
    """The connection was lost before the frame was confirmed and it was too old to be
    re-sent when the connection came back. Only :meth:`FramePublisher.publish_and_confirm`
    raises this; otherwise it is counted in ``stats.dropped_stale``."""


def describe(frame: Frame) -> str:
    """A frame named for a person or a log, by its ids only (never its pixels)."""
    return (
        f"frame {frame.message_id} (meeting {frame.meeting_id}, "
        f"participant {frame.participant_id}, sequence {frame.sequence})"
    )


UNROUTABLE_HINT = (
    f"no queue is bound to the exchange {FRAMES_EXCHANGE!r}: "
    "no worker has declared its queue yet; start a worker (memelearning worker) first"
)
MISSING_EXCHANGE_HINT = (
    f"the exchange {FRAMES_EXCHANGE!r} does not exist: no worker has declared it yet "
    "(or set MEMELEARNING_PUBLISHER_DECLARE_EXCHANGE=true); start a worker first"
)
