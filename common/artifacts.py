"""Artifact directories: a manifest.json in every one, written to a temporary sibling and renamed.

A crash at any point leaves either the old directory or the complete new one, never a half-written
directory under the final name. One save/load pair serves every artifact kind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import __version__
from common.errors import ArtifactCorrupt, ManifestMismatch, NotFound
from common.hashing import sha256_file

MANIFEST = "manifest.json"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


def atomic_write_text(path: Path, text: str) -> None:
    """Replace a file atomically (write a temp sibling, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def file_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every file under a directory except the manifest, by relative path."""
    out: dict[str, str] = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            out[str(p.relative_to(directory))] = sha256_file(p)
    return out


def make_manifest(kind: str, format_version: int, **fields: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "format_version": format_version,
        "code_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **fields,
    }


@contextlib.contextmanager
def atomic_artifact_dir(final: Path, manifest: dict[str, Any], hash_files: bool = True) -> Iterator[Path]:
    """Yield a temporary directory to fill; on success write the manifest and rename it to `final`.

    An existing `final` is replaced (moved aside then removed) only after the new one is complete.
    On an exception the temporary directory is removed and `final` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if hash_files:
            manifest = {**manifest, "files": file_hashes(tmp)}
        with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
        fsync_tree(tmp)
        old = None
        if final.exists():
            old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_manifest(directory: Path, kind: str | None = None, format_version: int | None = None) -> dict[str, Any]:
    """Load and check a manifest; fail loudly on a missing file, another kind or another format."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.exists():
        raise NotFound(f"artifact directory {directory} does not exist")
    if not path.exists():
        raise ArtifactCorrupt(f"{directory} has no {MANIFEST}; it was not written by ragkiln or is incomplete")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactCorrupt(f"{path} is unreadable: {e}") from e
    if kind is not None and manifest.get("kind") != kind:
        raise ManifestMismatch(f"{directory} holds a {manifest.get('kind')!r} artifact, expected {kind!r}")
    if format_version is not None and manifest.get("format_version") != format_version:
        raise ManifestMismatch(
            f"{directory} has format version {manifest.get('format_version')}, this ragkiln reads {format_version}"
        )
    return manifest


def manifest_if_any(directory: str | Path | None) -> dict[str, Any] | None:
    """A directory's manifest, or None where there is no readable one of ours (the packaged base model, a user's
    model, a stage not run yet): for what only reports or follows a history, never for what loads the artifact."""
    if not directory:
        return None
    try:
        manifest = read_manifest(Path(directory))
    except (NotFound, ArtifactCorrupt):
        return None
    return manifest if isinstance(manifest, dict) else None


def verify_files(directory: Path, manifest: dict[str, Any]) -> None:
    """Check every file listed in the manifest exists with its recorded hash."""
    for rel, digest in manifest.get("files", {}).items():
        p = Path(directory) / rel
        if not p.exists():
            raise ArtifactCorrupt(f"{directory}: file {rel} listed in the manifest is missing")
        if sha256_file(p) != digest:
            raise ArtifactCorrupt(f"{directory}: file {rel} does not match its manifest hash")
