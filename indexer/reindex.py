"""Incremental reindex planning: a pure diff of what is indexed against what was scanned."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReindexPlan:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def is_noop(self) -> bool:
        return not (self.added or self.changed or self.removed)


def plan_reindex(
    indexed: Mapping[str, tuple[str, str]],
    scanned: Mapping[str, str],
    chunker: str,
    in_scope: Callable[[str], bool],
) -> ReindexPlan:
    """Compare indexed docs (id -> (sha256, chunker)) with scanned docs (id -> sha256).

    A doc is changed when its content hash or the chunker differs; an indexed doc missing from the
    scan is removed only when `in_scope(doc_id)` says the scan covered where it came from (ingesting
    folder B never deletes documents that came from folder A).
    """
    added, changed, unchanged, removed = [], [], [], []
    for doc_id, sha in scanned.items():
        old = indexed.get(doc_id)
        if old is None:
            added.append(doc_id)
        elif old != (sha, chunker):
            changed.append(doc_id)
        else:
            unchanged.append(doc_id)
    for doc_id in indexed:
        if doc_id not in scanned and in_scope(doc_id):
            removed.append(doc_id)
    return ReindexPlan(sorted(added), sorted(changed), sorted(unchanged), sorted(removed))
