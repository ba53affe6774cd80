"""The API side of memelearning: reaction events in, GIFs injected into meetings out.

``tail`` prints events; the service (``memelearning reactions serve``) de-duplicates
them, confirms held gestures, applies cooldown, rate limit and opt-out, picks a GIF
from the catalog and injects it through an eyeson-style meeting API. The meeting
simulator implements that API locally, for tests and the demo page.
"""

from reactions.catalog import Catalog, Confirm, Media, MediaPicker
from reactions.decide import Decider, Decision
from reactions.meeting_api import (
    MeetingApi,
    MeetingApiError,
    PermanentError,
    RetryPolicy,
    RoomNotReady,
    TransientError,
)
from reactions.service import ReactionService, run_service
from reactions.settings import ReactionsSettings
from reactions.simulator import MeetingSimulator, run_simulator
from reactions.tail import tail

__all__ = [
    "Catalog",
    "Confirm",
    "Decider",
    "Decision",
    "Media",
    "MediaPicker",
    "MeetingApi",
    "MeetingApiError",
    "MeetingSimulator",
    "PermanentError",
    "ReactionService",
    "ReactionsSettings",
    "RetryPolicy",
    "RoomNotReady",
    "TransientError",
    "run_service",
    "run_simulator",
    "tail",
]
