"""A client of the soak test, run in its own OS process (spawned, so it must be importable):
keyed single submissions, each retried with its key until the gateway accepts it, as a
careful user's client does — through a dropped connection, a 5xx or a 429."""

from __future__ import annotations

import ssl
import time

import httpx

from tests.support import DEMO_TASK

RETRY_FOR_S = 120.0


def submit_all(url: str, token: str, cafile: str, keys: list[str]) -> tuple[dict[str, str], int]:
    """Submit one task per key; the task id each key was accepted as, and the retries."""
    accepted: dict[str, str] = {}
    retries = 0
    verify = ssl.create_default_context(cafile=cafile)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30, verify=verify) as http:
        for key in keys:
            deadline = time.monotonic() + RETRY_FOR_S
            while True:
                wait = 0.1
                try:
                    response = http.post(
                        "/v1/tasks", json=DEMO_TASK, headers={"Idempotency-Key": key}
                    )
                    if response.status_code in (200, 201):
                        accepted[key] = response.json()["id"]
                        break
                    if response.status_code == 429:
                        wait = float(response.headers.get("Retry-After", wait))
                    elif response.status_code < 500:
                        raise AssertionError(f"{key}: {response.status_code} {response.text}")
                except httpx.TransportError:
                    pass
                retries += 1
                if time.monotonic() > deadline:
                    raise AssertionError(f"{key} was never accepted")
                time.sleep(wait)
    return accepted, retries
