"""The web console (`/ui`) on `prsm up`, in a real headless Chromium (Debian's, driven by
Playwright): sign in, submit a task and watch it succeed, open its result; start a rollout
from the console and watch it advance while a viewer sees no promote button (and the API
refuses the viewer's promote); another tenant's task is not found. Every page's screenshot is
saved to ``test-results/console/``."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.cli import prsm

SHOTS = Path(__file__).resolve().parents[3] / "test-results" / "console"
MODEL = "prsm-tiny"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: run `python3 scripts/install.py --test`"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


def token(cluster: dict[str, Any], user: str, tenant: str, role: str) -> str:
    return prsm(cluster["env"], "token", "--user", user, "--tenant", tenant, "--role", role).strip()


def signed_in(browser: Browser, cluster: dict[str, Any], credential: str) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.goto(f"{cluster['gateway']}/ui/")
    page.get_by_label("Token or API key").fill(credential)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Console")).to_be_visible()
    return page


def visit(page: Page, hash_path: str, view: str) -> None:
    """Open a view and wait until its figures are on the page."""
    page.evaluate("path => { location.hash = path }", hash_path)
    expect(page.locator(f"main[data-view={view}]")).to_have_attribute("data-state", "ready")


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_a_user_submits_a_task_sees_it_succeed_and_reads_its_result(
    cluster: dict[str, Any], browser: Browser
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.goto(f"{cluster['gateway']}/ui/")
    shot(page, "sign-in")
    page.close()
    credential = token(cluster, "ursula", "lab", "user")
    page = signed_in(browser, cluster, credential)
    # The token is kept in the tab's session storage, never in the address.
    assert credential not in page.url
    assert page.evaluate("sessionStorage.getItem('prsm-token')") == credential

    visit(page, "#/submit", "submit")
    page.get_by_label("Type").select_option("map_reduce")
    page.get_by_label("Params (JSON)").fill(
        '{"skill": "math.square", "items": [1, 2, 3, 4, 5], "reduce": "reduce.sum"}'
    )
    shot(page, "submit")
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("main")).to_have_attribute("data-view", "task")
    expect(page.locator(".badge.SUCCEEDED").first).to_be_visible(timeout=120_000)
    expect(page.locator("#result")).to_contain_text("55", timeout=10_000)
    expect(page.get_by_role("link", name="Download result")).to_be_visible()
    assert page.get_by_role("row").count() > 5  # a row per subtask, and where they ran
    shot(page, "task")
    task_url = page.url

    visit(page, "#/tasks", "tasks")
    expect(page.get_by_role("link", name=task_url.rsplit("/", 1)[-1][:8])).to_be_visible()
    shot(page, "tasks")

    # Another tenant's user, at that task's address: not found (the API's answer).
    other = signed_in(browser, cluster, token(cluster, "olga", "other-lab", "user"))
    other.goto(task_url)
    expect(other.get_by_role("alert")).to_have_text("Not found.")
    other.close()
    page.close()


def test_a_rollout_started_in_the_console_advances_and_only_who_may_promotes_it(
    cluster: dict[str, Any], browser: Browser
) -> None:
    admin = signed_in(browser, cluster, cluster["token"])
    visit(admin, "#/rollouts", "rollouts")
    admin.get_by_label("Model").fill(MODEL)
    admin.get_by_label("New version").fill("v-console")
    for label, value in {"First share %": "25", "Evaluate every (s)": "2", "Min window (s)": "0",
                         "Min requests": "3", "Max latency ratio": "100"}.items():  # fmt: skip
        admin.get_by_label(label).fill(value)
    shot(admin, "rollouts")
    admin.get_by_role("button", name="Start rollout").click()
    expect(admin.locator("main")).to_have_attribute("data-view", "rollout")
    rollout_id = admin.url.rsplit("/", 1)[-1]

    advanced = threading.Event()
    traffic = threading.Thread(target=_traffic, args=(cluster, rollout_id, advanced), daemon=True)
    traffic.start()
    try:
        # The new version deploys (a second engine), then takes 25 %, then 50 %.
        expect(admin.locator("#traffic")).to_contain_text("v-console: 50", timeout=300_000)
    finally:
        advanced.set()
        traffic.join(timeout=120)
    expect(admin.locator("svg.chart")).to_be_visible()
    shot(admin, "rollout")
    # The requests the new version served are in its traffic figures (from every replica).
    figures = httpx.get(
        f"{cluster['gateway']}/v1/deployments/{MODEL}/v-console/traffic",
        headers={"Authorization": f"Bearer {cluster['token']}"},
        timeout=30,
    ).json()
    assert figures["requests"] >= 3 and figures["ttft_p50_ms"] > 0, figures
    assert figures["tokens_per_s"] > 0 and figures["errors"] == 0, figures

    viewer_token = token(cluster, "vera", "default", "viewer")
    viewer = signed_in(browser, cluster, viewer_token)
    visit(viewer, f"#/rollouts/{rollout_id}", "rollout")
    expect(viewer.locator("#traffic")).to_contain_text("v-console")
    expect(viewer.get_by_role("button", name="Promote")).to_have_count(0)
    viewer_auth = {"Authorization": f"Bearer {viewer_token}"}
    forced = httpx.post(
        f"{cluster['gateway']}/v1/rollouts/{rollout_id}/promote", headers=viewer_auth, timeout=30
    )
    assert forced.status_code == 403, forced.text
    viewer.close()

    admin.get_by_role("button", name="Promote").click()
    expect(admin.locator(".badge.COMPLETED")).to_be_visible(timeout=30_000)
    for view in ("models", "cluster", "audit"):
        visit(admin, f"#/{view}", view)
        shot(admin, view)
    # The audit view lists the viewer's refused promote.
    denied = admin.get_by_role("row").filter(has_text="vera").filter(has_text="promote")
    expect(denied.first).to_contain_text("deny")
    admin.close()


def _traffic(cluster: dict[str, Any], rollout_id: str, advanced: threading.Event) -> None:
    """One chat request at a time until the rollout has advanced past its first step (then
    at most one more request lands in the next window: too few for another decision)."""
    llm = openai.OpenAI(base_url=f"{cluster['gateway']}/v1", api_key=cluster["token"], timeout=60)
    headers = {"Authorization": f"Bearer {cluster['token']}"}
    with httpx.Client(base_url=cluster["gateway"], headers=headers, timeout=30) as http:
        while not advanced.is_set():
            llm.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1
            )
            if http.get(f"/v1/rollouts/{rollout_id}").json()["percent"] > 25:
                advanced.set()
            time.sleep(0.1)  # under the reads rate limit this package's platform sets
