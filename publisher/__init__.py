"""The MCU side: publish sampled video frames of meeting participants to RabbitMQ.

The wire contract lives in :mod:`publisher.protocol`; this package re-exports what a
caller needs to publish frames (:class:`FramePublisher`) and to simulate participants
from a video file or an image folder (:class:`ParticipantSimulator`).
"""

from publisher.errors import (
    BrokerUnavailableError,
    FrameConfirmTimeoutError,
    FrameExpiredError,
    FrameNackedError,
    FrameRefusedError,
    FrameUnroutableError,
    PublishError,
)
from publisher.protocol import Frame, FrameError, FrameMeta, parse_frame
from publisher.publishing import FramePublisher, PublisherStats
from publisher.settings import PublisherSettings
from publisher.simulation import ParticipantSimulator, participant_names
from publisher.sources import (
    FrameSource,
    ImageFolderSource,
    SourceError,
    SourceFrame,
    SourceStats,
    VideoSource,
    open_source,
)

__all__ = [
    "BrokerUnavailableError",
    "Frame",
    "FrameConfirmTimeoutError",
    "FrameError",
    "FrameExpiredError",
    "FrameMeta",
    "FrameNackedError",
    "FramePublisher",
    "FrameRefusedError",
    "FrameSource",
    "FrameUnroutableError",
    "ImageFolderSource",
    "ParticipantSimulator",
    "PublishError",
    "PublisherSettings",
    "PublisherStats",
    "SourceError",
    "SourceFrame",
    "SourceStats",
    "VideoSource",
    "open_source",
    "parse_frame",
    "participant_names",
]
