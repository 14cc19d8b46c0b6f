"""Content hashes of inputs, so that a resume can verify what it resumes."""

import hashlib
from pathlib import Path

__all__ = ["file_sha256", "folder_sha256"]

_CHUNK = 1 << 22


def file_sha256(path):
    """``sha256:<hex>`` of one file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def folder_sha256(path):
    """``sha256:<hex>`` over every file of a folder (relative names and bytes).

    Temporary files of interrupted writers (``.llmfbn-*``) and lock files are
    left out, so the hash changes exactly when the folder's content does.
    """
    root = Path(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = item.relative_to(root)
        if any(part.startswith(".llmfbn-") for part in relative.parts) or item.suffix == ".lock":
            continue
        digest.update(str(relative.as_posix()).encode() + b"\0")
        digest.update(file_sha256(item).encode() + b"\0")
    return "sha256:" + digest.hexdigest()
