"""The model card's tables, from hand-made metrics: what is shown, and when not."""

from __future__ import annotations

from typing import Any

from models.evaluate.model_card import far_table, thumbs_down_table


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


def test_people_farther_away_are_shown_ours_beside_the_peers() -> None:
    def far(found: float, like: float) -> dict[str, Any]:
        per_class = {"like": {"ap": like, "n_gt": 37}, "fist": {"ap": 0.9, "n_gt": 90}}
        gestures = {"mean_ap": 0.934, "per_class": per_class}
        return {
            "hands": 265,
            "hands_found": found,
            "gestures_named_right": 0.8,
            "gestures": gestures,
        }

    metrics = {
        "production": {"signs_far": far(0.917, 0.7841)},
        "peer": {"signs_far": far(0.9, 0.5)},
    }
    header, _, ours, peer = far_table(metrics)
    assert "like AP@0.5" in header
    assert ours == "| ours | 265 | 0.917 | 0.934 | 0.784 | 0.800 |"
    assert peer.startswith("| peer | 265 | 0.900 |")
    assert far_table({"production": {}, "peer": {"signs_far": far(0.9, 0.5)}}) == []
