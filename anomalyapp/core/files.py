"""Writing files so that a crash, a full disk or a kill never leaves a half-written one under its name; hashing
them."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from anomalyapp.core.errors import DataError


def write_atomically(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file beside it and ``os.replace``.

    The parent folder is created; any failure is a ``DataError`` naming the file, and leaves what was there.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    blocking = next((p for p in target.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise DataError(f"cannot write {target}: {blocking} is a file, not a folder")
    if target.is_dir():
        raise DataError(f"cannot write {target}: it is a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise DataError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    return write_atomically(path, text.encode("utf-8"))


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes as hex, read in 1 MiB blocks; an unreadable file raises ``OSError``."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
