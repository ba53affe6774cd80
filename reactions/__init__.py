"""The API side of memelearning: reaction events in, GIFs injected into meetings out.

``tail`` prints events; the service (``memelearning reactions serve``) de-duplicates
them, confirms held gestures, applies cooldown, rate limit and opt-out, picks a GIF
from the catalog and injects it through an eyeson-style meeting API.
"""

from reactions.settings import ReactionsSettings
from reactions.tail import tail

__all__ = ["ReactionsSettings", "tail"]
