"""Deterministic train/test splits: random, stratified by label, and by group.

Every split depends only on the items' keys and the seed, never on the order the items
arrive in (a directory listing may differ between machines), and the same seed always
gives the same split.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Collection, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Split(Generic[T]):
    train: tuple[T, ...]
    test: tuple[T, ...]


def split_items(
    items: Iterable[T], *, key: Callable[[T], str], test_fraction: float, seed: int
) -> Split[T]:
    """A seeded random split; ``round(n * test_fraction)`` items go to test."""
    _check_fraction(test_fraction)
    ordered = _shuffled(items, key, seed)
    n_test = round(len(ordered) * test_fraction)
    return Split(train=tuple(ordered[n_test:]), test=tuple(ordered[:n_test]))


def stratified_split(
    items: Iterable[T],
    *,
    key: Callable[[T], str],
    label_of: Callable[[T], Hashable],
    test_fraction: float,
    seed: int,
) -> Split[T]:
    """A seeded split that keeps each label's share: ``round(n_label * test_fraction)``
    items of each label go to test."""
    _check_fraction(test_fraction)
    by_label: dict[Hashable, list[T]] = defaultdict(list)
    for item in items:
        by_label[label_of(item)].append(item)
    train: list[T] = []
    test: list[T] = []
    for label in sorted(by_label, key=str):
        part = split_items(by_label[label], key=key, test_fraction=test_fraction, seed=seed)
        train += part.train
        test += part.test
    return Split(train=tuple(train), test=tuple(test))


def group_split(
    items: Iterable[T],
    *,
    key: Callable[[T], str],
    group_of: Callable[[T], str],
    seed: int,
    test_groups: Collection[str] | None = None,
    test_fraction: float = 0.2,
) -> Split[T]:
    """Hold out whole groups (people in ``signs/``): no group is in both parts.

    Either name the held-out groups in ``test_groups``, or let the seed choose
    ``round(n_groups * test_fraction)`` of them (at least one, and never all).
    """
    materialised = list(items)
    groups = sorted({group_of(item) for item in materialised})
    if test_groups is None:
        _check_fraction(test_fraction)
        if len(groups) < 2:
            raise ValueError(f"a group split needs at least two groups, got {groups}")
        n_test = min(max(round(len(groups) * test_fraction), 1), len(groups) - 1)
        held_out = set(random.Random(seed).sample(groups, n_test))
    else:
        held_out = set(test_groups)
        unknown = held_out - set(groups)
        if unknown:
            raise ValueError(f"unknown test groups {sorted(unknown)}; groups are {groups}")
    ordered = _shuffled(materialised, key, seed)
    return Split(
        train=tuple(item for item in ordered if group_of(item) not in held_out),
        test=tuple(item for item in ordered if group_of(item) in held_out),
    )


def _shuffled(items: Iterable[T], key: Callable[[T], str], seed: int) -> list[T]:
    ordered = sorted(items, key=key)
    random.Random(seed).shuffle(ordered)
    return ordered


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be within [0, 1], got {test_fraction}")
