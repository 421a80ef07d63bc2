"""The SDK's side of shipping code: local folders and wheels named in a ``runtime_env`` are
packed here and uploaded (``POST /v1/packages``), and the runtime_env sent names them by the
reference the gateway returns.

A folder is zipped with fixed timestamps and in name order, leaving out ``__pycache__``,
``.git``, virtual environments and ``*.pyc``: the same files give the same bytes, so the
same sha256 — the code hash a task records.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SKIPPED = {"__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
TOP = "working_dir"  # one top-level folder: Ray unpacks what is inside it


@dataclass(frozen=True)
class Upload:
    """A local package to upload, and where its reference goes in the runtime_env."""

    key: str  # "working_dir", "py_modules" or "pip"
    index: int  # in a list (-1: working_dir)
    filename: str
    data: bytes


def zip_folder(folder: Path) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED and not d.endswith(".egg-info"))
            for name in sorted(files):
                if name.endswith(".pyc"):
                    continue
                path = Path(root) / name
                info = zipfile.ZipInfo(f"{TOP}/{path.relative_to(folder).as_posix()}")
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (path.stat().st_mode & 0o777) << 16
                archive.writestr(info, path.read_bytes())
    return out.getvalue()


def _local(entry: object) -> Path | None:
    if not isinstance(entry, str) or entry.startswith("sha256:"):
        return None
    path = Path(entry).expanduser()
    return path if path.exists() else None


def uploads(env: dict[str, Any]) -> list[Upload]:
    """The local folder (``working_dir``) and wheels (``py_modules``, ``pip``) ``env`` names."""
    found: list[Upload] = []
    folder = _local(env.get("working_dir"))
    if folder is not None:
        if not folder.is_dir():
            raise ValueError(f"runtime_env working_dir {folder} is not a folder")
        found.append(Upload("working_dir", -1, "working_dir.zip", zip_folder(folder)))
    for key in ("py_modules", "pip"):
        for i, entry in enumerate(env.get(key) or []):
            path = _local(entry)
            if path is None:
                continue
            if not (path.is_file() and path.suffix == ".whl"):
                raise ValueError(f"runtime_env {key}: {path} is not a wheel (.whl)")
            found.append(Upload(key, i, path.name, path.read_bytes()))
    return found


def with_refs(env: dict[str, Any], uploaded: list[tuple[Upload, str]]) -> dict[str, Any]:
    """``env`` with each uploaded package replaced by its reference."""
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in env.items()}
    for upload, ref in uploaded:
        if upload.index < 0:
            out[upload.key] = ref
        else:
            out[upload.key][upload.index] = ref
    return out
