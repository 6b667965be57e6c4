"""A held-out dev split of training data, for choosing epochs and recipes without touching the
evaluation file.

Consecutive sentences of a CoNLL file come from the same news story and repeat its names, so a
sentence-level random split would leak them into dev and flatter every recipe alike. The split is
by blocks of consecutive examples (a stand-in for documents when the file has no `-DOCSTART-`
markers), blocks drawn with a fixed seed: the same file, fraction and seed give the same split.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from common.errors import InvalidInput

T = TypeVar("T")

DEFAULT_BLOCK = 50  # about two news stories of CoNLL-2003


def split_held_out(
    examples: Sequence[T], fraction: float = 0.1, seed: int = 0, block: int = DEFAULT_BLOCK
) -> tuple[list[T], list[T]]:
    """(fit, dev): `fraction` of the blocks of `block` consecutive examples go to dev, order kept."""
    if not 0 < fraction < 1:
        raise InvalidInput(f"dev fraction must be in (0, 1), got {fraction}")
    if block < 1:
        raise InvalidInput(f"block size must be >= 1, got {block}")
    n_blocks = -(-len(examples) // block)
    n_dev = round(n_blocks * fraction)
    if n_blocks < 2 or n_dev < 1 or n_dev >= n_blocks:
        raise InvalidInput(
            f"{len(examples)} examples are too few to hold out {fraction:.0%} by blocks of {block}; pass a dev file"
        )
    dev_blocks = set(random.Random(seed).sample(range(n_blocks), n_dev))
    fit: list[T] = []
    dev: list[T] = []
    for i, ex in enumerate(examples):
        (dev if i // block in dev_blocks else fit).append(ex)
    return fit, dev
