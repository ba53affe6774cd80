"""The model card's tables, from hand-made metrics: what is shown, and when not."""

from __future__ import annotations

from typing import Any

from models.evaluate.model_card import thumbs_down_table


def _figures(hands: int, found: float, ap: float, named: float) -> dict[str, Any]:
    return {
        "hands": hands,
        "hands_found": found,
        "gestures_named_right": named,
        "gestures": {"per_class": {"dislike": {"ap": ap, "n_gt": hands}}},
    }


def test_turned_thumbs_are_shown_ours_beside_the_peers() -> None:
    metrics = {
        "production": {"signs_thumbs_turned": _figures(37, 0.946, 0.9461, 0.811)},
        "peer": {"signs_thumbs_turned": _figures(37, 0.919, 0.892, 0.838)},
    }
    header, rule, ours, peer = thumbs_down_table(metrics)
    assert "dislike AP@0.5" in header and rule.startswith("|---|")
    assert ours == "| ours | 37 | 0.946 | 0.946 | 0.811 |"
    assert peer == "| peer | 37 | 0.919 | 0.892 | 0.838 |"


def test_no_table_without_our_figures_and_no_peer_row_without_the_peer() -> None:
    assert thumbs_down_table({"production": {}, "peer": None}) == []
    only_ours = {"production": {"signs_thumbs_turned": _figures(3, 1.0, 1.0, 1.0)}, "peer": None}
    assert len(thumbs_down_table(only_ours)) == 3
