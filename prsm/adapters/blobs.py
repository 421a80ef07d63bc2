"""The result store: bytes kept by their sha256 in a directory or any filesystem pyarrow
reaches (``/var/lib/prsm/results``, ``s3://bucket/prefix``, ``gs://…``), for outputs too
large for events and for code a task ships (zipped folders, wheels).

A blob is written once: to a temporary name, then moved to ``<root>/<hex[:2]>/<hex><suffix>``,
so a reader never sees part of one and two writers of the same bytes write the same file.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from pyarrow import fs

from prsm.domain.results import DIGEST, digest_of, reference

CHUNK = 1 << 20


class BlobStore:
    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self._fs, self._root = fs.FileSystem.from_uri(self.uri)
        self._local = isinstance(self._fs, fs.LocalFileSystem)
        self._fs.create_dir(self._root, recursive=True)

    def _path(self, digest: str, suffix: str = "") -> str:
        if not DIGEST.match(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        hex_ = digest.removeprefix("sha256:")
        return f"{self._root}/{hex_[:2]}/{hex_}{suffix}"

    def put(self, chunks: Iterable[bytes], suffix: str = "") -> tuple[str, int]:
        """Store the bytes; their ``("sha256:…", size)``."""
        temp = f"{self._root}/tmp/{uuid.uuid4().hex}"
        self._fs.create_dir(f"{self._root}/tmp", recursive=True)
        h, size = hashlib.sha256(), 0
        with self._fs.open_output_stream(temp) as out:
            for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                out.write(chunk)
        digest = f"sha256:{h.hexdigest()}"
        final = self._path(digest, suffix)
        self._fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
        if self._fs.get_file_info(final).type == fs.FileType.File:
            self._fs.delete_file(temp)
        else:
            self._fs.move(temp, final)
        return digest, size

    def exists(self, digest: str, suffix: str = "") -> bool:
        found: bool = self._fs.get_file_info(self._path(digest, suffix)).type == fs.FileType.File
        return found

    def size(self, digest: str, suffix: str = "") -> int:
        info = self._fs.get_file_info(self._path(digest, suffix))
        if info.type != fs.FileType.File:
            raise FileNotFoundError(digest)
        return int(info.size)

    def chunks(self, digest: str, suffix: str = "") -> Iterator[bytes]:
        with self._fs.open_input_stream(self._path(digest, suffix)) as stream:
            while chunk := stream.read(CHUNK):
                yield bytes(chunk)

    def read(self, digest: str, suffix: str = "") -> bytes:
        return b"".join(self.chunks(digest, suffix))

    def url(self, digest: str, suffix: str = "") -> str:
        """The blob as a URI Ray's runtime_env can fetch (``file://`` or the store's own)."""
        path = self._path(digest, suffix)
        if self._local:
            return f"file://{path}"
        scheme = self.uri.split("://", 1)[0]
        return f"{scheme}://{path}"

    # --- JSON values ---------------------------------------------------------------------

    def keep(self, value: Any, limit: int) -> Any:
        """``value``, or a reference to it stored here if its JSON is over ``limit`` bytes."""
        if isinstance(value, int | float | bool) or value is None:
            return value
        encoded = json.dumps(value, separators=(",", ":")).encode()
        if len(encoded) <= limit:
            return value
        return reference(*self.put([encoded]))

    def resolve(self, value: Any) -> Any:
        """``value`` with a reference replaced by what it refers to (and in a list, each)."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        digest = digest_of(value)
        return value if digest is None else json.loads(self.read(digest))

    def result(self, result: dict[str, Any], limit: int) -> tuple[str | None, Any]:
        """A task's result with a stored output in it, or larger than ``limit``, stored whole
        (its digest, and no inline result); otherwise ``(None, result)``."""
        parts = [*result.get("outputs", []), result.get("value"), result.get("summary")]
        small = len(json.dumps(result, separators=(",", ":"))) <= limit
        if small and not any(digest_of(p) for p in parts):
            return None, result
        digest, _ = self.document(result)
        return digest, None

    def document(self, value: Any) -> tuple[str, int]:
        """Store ``value`` as one JSON document, references spliced in from their blobs
        (streamed: never the whole document in memory)."""
        return self.put(self._encode(value))

    def _encode(self, value: Any) -> Iterator[bytes]:
        digest = digest_of(value)
        if digest is not None:
            yield from self.chunks(digest)
        elif isinstance(value, dict):
            yield b"{"
            for i, (k, v) in enumerate(value.items()):
                yield (b"," if i else b"") + json.dumps(str(k)).encode() + b":"
                yield from self._encode(v)
            yield b"}"
        elif isinstance(value, list):
            yield b"["
            for i, v in enumerate(value):
                if i:
                    yield b","
                yield from self._encode(v)
            yield b"]"
        else:
            yield json.dumps(value, separators=(",", ":")).encode()
