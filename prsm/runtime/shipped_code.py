"""A task's ``runtime_env`` as Ray takes it: its packages as URIs of the result store that
Ray fetches on each node (``file://`` for a local store, the store's own scheme — s3://,
gs:// — on a cluster), a wheel to pip-install as a path on the node."""

from __future__ import annotations

from typing import Any

from prsm.adapters.blobs import BlobStore
from prsm.domain.runtime_env import package


def ray_runtime_env(env: dict[str, Any], blobs: BlobStore) -> dict[str, Any] | None:
    """``None`` for a task that ships no code; ``ValueError`` for a wheel pip cannot reach."""
    if not env:
        return None
    out: dict[str, Any] = {}
    if "working_dir" in env:
        out["working_dir"] = _url(env["working_dir"], blobs)
    if env.get("py_modules"):
        out["py_modules"] = [_url(ref, blobs) for ref in env["py_modules"]]
    if env.get("pip"):
        out["pip"] = [_pip(req, blobs) for req in env["pip"]]
    if env.get("env_vars"):
        out["env_vars"] = dict(env["env_vars"])
    return out


def _url(ref: str, blobs: BlobStore) -> str:
    found = package(ref)
    if found is None:
        raise ValueError(f"not a package: {ref!r}")
    return blobs.url(found[0], "/" + found[1])


def _pip(req: str, blobs: BlobStore) -> str:
    found = package(req)
    if found is None:
        return req
    url = _url(req, blobs)
    if not url.startswith("file://"):
        raise ValueError("an uploaded wheel is pip-installed from a local or shared result "
                         f"store only; publish it to an index for this cluster: {req}")  # fmt: skip
    return url.removeprefix("file://")
