"""Where batch files live: the `batches` alias of Django's STORAGES (config/settings.py), a
FileSystemStorage under BATCH_STORAGE_DIR by default. Any storage backend works, e.g. django-storages'
S3Storage for S3-compatible object storage (docs/batches.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from django.core.files.base import ContentFile, File
from django.core.files.storage import storages

CHUNK_BYTES = 64 * 1024


def _storage():
    return storages["batches"]


def save(name: str, content: bytes | Any) -> str:
    """Store `content` (bytes or an uploaded file) under `name`, or a free name like it; the name used."""
    return _storage().save(name, ContentFile(content) if isinstance(content, bytes) else File(content))


def read(name: str) -> bytes:
    with _storage().open(name, "rb") as handle:
        return handle.read()


def open(name: str) -> IO[bytes]:  # noqa: A001 - the storage API's word
    return _storage().open(name, "rb")


def chunks(handle: IO[bytes]) -> Iterator[bytes]:
    try:
        while data := handle.read(CHUNK_BYTES):
            yield data
    finally:
        handle.close()


def delete(name: str) -> None:
    _storage().delete(name)
