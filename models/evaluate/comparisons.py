"""The command line shared by the comparisons that score variants of a model side by
side on the same frames, as recorded and in other rooms
(:mod:`models.evaluate.stage_one`, :mod:`models.evaluate.runtimes`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from models.dataset import DEFAULT_DATA
from models.evaluate import conditions


def comparison_parser(
    doc: str | None, variants: Sequence[str], default_rooms: Sequence[str]
) -> argparse.ArgumentParser:
    """MODEL_DIR, --data, --variants (default: all), --conditions, --limit, --json."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument("model_dir", type=Path, help="an exported gesture model (its head)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--variants",
        type=conditions.names_argument(variants, "variant"),
        default=list(variants),
        help=f"'all' or a comma-separated list of {', '.join(variants)}",
    )
    parser.add_argument(
        "--conditions",
        type=conditions.names_argument(),
        default=list(default_rooms),
        help="'all' or a comma-separated list of room conditions to score in too",
    )
    parser.add_argument("--limit", type=int, help="at most N images per source (smoke runs)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser


def report(
    results: Mapping[str, Any], json_path: Path | None, markdown: Callable[[Any], str]
) -> None:
    """Print the table (and write the figures to ``json_path`` when given)."""
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(markdown(results), end="")
