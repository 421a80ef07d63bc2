"""A user of a tenant, on `prsm up`, sees the platform's shared model in their deployments
(marked shared) and cannot manage it."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.e2e.cli import prsm


def test_a_user_sees_the_shared_default_model_and_cannot_undeploy_it(
    cluster: dict[str, Any],
) -> None:
    env = {**cluster["env"], "PRSM_URL": cluster["gateway"]}
    token = prsm(env, "token", "--user", "uma", "--tenant", "lab", "--role", "user").strip()
    listed = json.loads(prsm({**env, "PRSM_TOKEN": token}, "models", "list", "--json"))
    # The one serving (another module's rollout may leave a version on its way out).
    [tiny] = [d for d in listed if d["name"] == "prsm-tiny" and d["status"] == "READY"]
    assert tiny["shared"] is True, tiny
    refused = httpx.delete(f"{cluster['gateway']}/v1/deployments/prsm-tiny/{tiny['version']}",
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
    assert refused.status_code == 403, refused.text
