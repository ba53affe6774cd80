"""The API side of memelearning: reaction events in, GIFs injected into meetings out.

``tail`` prints events; the service (``memelearning reactions serve``) de-duplicates
them, confirms held gestures (two-handed ones and waves from the worker's per-frame
detections too), applies the meeting's switches, the active speaker, cooldown and rate
limit, picks a GIF from the catalog and injects it through an eyeson-style meeting API,
or raises the participant's hand there. The meeting simulator implements that API
locally, for tests and the demo page.
"""

from reactions.catalog import Catalog, Confirm, Media, MediaPicker, Motion
from reactions.controls import MeetingControls
from reactions.decide import Decider, Decision
from reactions.hands import RaisedHands
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
from reactions.speakers import ActiveSpeakers
from reactions.tail import tail

__all__ = [
    "ActiveSpeakers",
    "Catalog",
    "Confirm",
    "Decider",
    "Decision",
    "Media",
    "MediaPicker",
    "MeetingApi",
    "MeetingApiError",
    "MeetingControls",
    "MeetingSimulator",
    "Motion",
    "PermanentError",
    "RaisedHands",
    "ReactionService",
    "ReactionsSettings",
    "RetryPolicy",
    "RoomNotReady",
    "TransientError",
    "run_service",
    "run_simulator",
    "tail",
]
