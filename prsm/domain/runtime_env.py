"""What a task's ``runtime_env`` may hold: the code it ships, in Ray's terms.

- ``working_dir``: a package (a zipped folder the SDK or CLI uploaded: ``sha256:<hex>/<name>.zip``),
  unpacked as the working directory of the task's agents and put on their ``sys.path``;
- ``py_modules``: packages (zips or wheels) put on ``sys.path``;
- ``pip``: requirements, or uploaded wheels, installed into the agents' environment;
- ``env_vars``: environment variables of the agents.

Packages are named by the sha256 of their bytes, so ``code_hash`` — the hash of the whole
environment — names exactly the code a task ran.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from prsm.domain.errors import InvalidRequest

PACKAGE = re.compile(r"^(sha256:[0-9a-f]{64})/([A-Za-z0-9][A-Za-z0-9._+-]{0,199})$")
KEYS = ("working_dir", "py_modules", "pip", "env_vars")
MAX_ENTRIES = 50
ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def package(ref: object) -> tuple[str, str] | None:
    """``(digest, file name)`` of a package reference, or ``None`` if ``ref`` is not one."""
    found = PACKAGE.match(ref) if isinstance(ref, str) else None
    return None if found is None else (found.group(1), found.group(2))


def check(env: dict[str, Any]) -> list[tuple[str, str]]:
    """The packages ``env`` names; a clear ``InvalidRequest`` if it is not well formed."""
    unknown = set(env) - set(KEYS)
    if unknown:
        raise InvalidRequest(
            f"runtime_env takes {', '.join(KEYS)}, not {', '.join(sorted(unknown))}"
        )
    packages: list[tuple[str, str]] = []
    if "working_dir" in env:
        found = package(env["working_dir"])
        if found is None or not found[1].endswith(".zip"):
            raise InvalidRequest(
                "runtime_env.working_dir must be an uploaded .zip package "
                "(sha256:<hex>/<name>.zip; the SDK and CLI upload a folder)"
            )
        packages.append(found)
    for i, ref in enumerate(_list(env, "py_modules")):
        found = package(ref)
        if found is None or not found[1].endswith((".zip", ".whl")):
            raise InvalidRequest(f"runtime_env.py_modules[{i}] must be an uploaded .zip or .whl")
        packages.append(found)
    for i, req in enumerate(_list(env, "pip")):
        if not isinstance(req, str) or not req.strip() or req.startswith("-"):
            raise InvalidRequest(f"runtime_env.pip[{i}] must be a requirement or an uploaded wheel")
        found = package(req)
        if found is not None:
            packages.append(found)
        elif req.startswith(("sha256:", "/", ".", "file:")):
            raise InvalidRequest(
                f"runtime_env.pip[{i}]: a local wheel is uploaded first "
                "(the SDK and CLI do it), then named sha256:<hex>/<file>.whl"
            )
    variables = env.get("env_vars", {})
    if not isinstance(variables, dict) or len(variables) > MAX_ENTRIES:
        raise InvalidRequest(
            f"runtime_env.env_vars must map at most {MAX_ENTRIES} names to strings"
        )
    for name, value in variables.items():
        if not ENV_VAR.match(name) or not isinstance(value, str):
            raise InvalidRequest(
                f"runtime_env.env_vars: {name!r} must be a name with a string value"
            )
    return packages


def _list(env: dict[str, Any], key: str) -> list[Any]:
    value = env.get(key, [])
    if not isinstance(value, list) or len(value) > MAX_ENTRIES:
        raise InvalidRequest(f"runtime_env.{key} must be a list of at most {MAX_ENTRIES} entries")
    return value


def code_hash(env: dict[str, Any]) -> str:
    """The hash of the environment, packages named by their content."""
    return "sha256:" + hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()
