"""One request's id followed through the platform `prsm up` starts, in the logs as a user
reads them (the Ray session's log folder): a prompt task submitted with an `X-Request-ID`
leaves JSON lines carrying that id in the gateway replica, the scheduler, the orchestrator,
the agent that ran it and the model replica it called, and the events recorded for the task
keep it as their correlation id; a chat completion's id reaches the gateway's and the model
replica's logs."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from prsm.domain import streams

WAIT_S = 300.0
ACTOR_PREFIX = ":actor_name:"  # Ray's first line in each actor's worker logs


@pytest.fixture(scope="module")
def logs(cluster: dict[str, Any]) -> Path:
    """The log folder of the Ray session that `prsm up` started, as a driver connected to
    the cluster is told it."""
    address = f"127.0.0.1:{cluster['env']['PRSM_RAY_PORT']}"
    code = (f"import ray; context = ray.init(address={address!r}, logging_level='ERROR', "
            "log_to_driver=False); print(context.address_info['session_dir'])")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], env=cluster["env"], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    folder = Path(done.stdout.strip().splitlines()[-1]) / "logs"
    assert folder.is_dir(), folder
    return folder


def lines_with(logs: Path, request_id: str) -> dict[str, list[dict[str, Any]]]:
    """PRSM's JSON lines that carry ``request_id``, in the stderr of every Ray worker, by the
    actor that wrote them (Ray names it at the top of its worker's logs)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(logs.glob("worker-*.err")):
        actor = ""
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(ACTOR_PREFIX):
                actor = line.removeprefix(ACTOR_PREFIX).strip()
            elif line.startswith("{") and request_id in line:
                entry = json.loads(line)
                if entry.get("correlation_id") == request_id:
                    found.setdefault(actor, []).append(entry)
    return found


def by_writer(found: dict[str, list[dict[str, Any]]]) -> dict[str, set[str]]:
    """Which of PRSM's processes wrote them: the loggers of each kind of actor."""
    kinds: dict[str, Callable[[str], bool]] = {
        "gateway": lambda a: a.startswith("ServeReplica:prsm:gateway"),
        "scheduler": lambda a: a == "Scheduler",
        "orchestrator": lambda a: a == "Orchestrator",
        "agent": lambda a: a == "AgentWorker",
        "model replica": lambda a: a.startswith("ServeReplica:prsm-model-"),
    }
    return {kind: {e["logger"] for a, entries in found.items() if test(a) for e in entries}
            for kind, test in kinds.items()}  # fmt: skip


def wait_for_lines(logs: Path, request_id: str, kinds: set[str]) -> dict[str, set[str]]:
    """The writers of lines with the id, once each of ``kinds`` has written one (a line
    is written before the work it reports goes on, so this rarely waits)."""
    deadline = time.monotonic() + 60
    while True:
        writers = by_writer(lines_with(logs, request_id))
        if all(writers[k] for k in kinds) or time.monotonic() > deadline:
            return writers
        time.sleep(1)


def test_a_prompt_tasks_request_id_is_in_the_logs_of_every_process_it_went_through(
    cluster: dict[str, Any], logs: Path
) -> None:
    request_id = f"corr-task-{uuid.uuid4().hex[:12]}"
    headers = {"Authorization": f"Bearer {cluster['token']}"}
    with httpx.Client(base_url=cluster["gateway"], headers=headers, timeout=60) as http:
        body = {"type": "prompt", "params": {"model": "prsm-tiny", "max_tokens": 4,
                                             "prompts": ["The measured value is"]}}  # fmt: skip
        submitted = http.post("/v1/tasks", json=body, headers={"X-Request-ID": request_id})
        assert submitted.status_code == 201, submitted.text
        assert submitted.headers["x-correlation-id"] == request_id
        task_id = submitted.json()["id"]
        deadline = time.monotonic() + WAIT_S
        task = submitted.json()
        while task["status"] not in ("SUCCEEDED", "FAILED", "CANCELLED"):
            assert time.monotonic() < deadline, f"task still {task['status']}"
            time.sleep(0.5)
            asked = http.get(f"/v1/tasks/{task_id}")
            if asked.status_code != 429:  # (another module may have spent the reads' budget)
                assert asked.status_code == 200, asked.text
                task = asked.json()
    assert task["status"] == "SUCCEEDED", task
    writers = wait_for_lines(logs, request_id, {"gateway", "scheduler", "orchestrator",
                                                "agent", "model replica"})  # fmt: skip
    assert writers == {
        "gateway": {"prsm.gateway"},
        "scheduler": {"prsm.scheduler"},
        "orchestrator": {"prsm.orchestrator"},
        "agent": {"prsm.agent"},
        "model replica": {"prsm.model"},
    }, lines_with(logs, request_id)
    # The events recorded for the task, by the gateway and by the runtime, keep the id.
    database = cluster["tmp"] / "data" / "prsm.db"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT event_type, metadata FROM events WHERE stream_id IN (?, ?) ORDER BY position",
            (streams.task(task_id), streams.run(task_id)),
        ).fetchall()
    recorded = [(name, json.loads(meta)) for name, meta in rows]
    assert {name for name, _ in recorded} >= {"TaskSubmitted", "TaskScheduled", "TaskStarted",
                                              "SubtaskCompleted", "TaskSucceeded"}  # fmt: skip
    assert {m["source"] for _, m in recorded} >= {"gateway", "scheduler", "orchestrator"}
    assert {m["correlation_id"] for _, m in recorded} == {request_id}


def test_a_chat_completions_request_id_is_in_the_gateways_and_the_model_replicas_logs(
    cluster: dict[str, Any], logs: Path
) -> None:
    request_id = f"corr-chat-{uuid.uuid4().hex[:12]}"
    headers = {"Authorization": f"Bearer {cluster['token']}", "X-Request-ID": request_id}
    body = {"model": "prsm-tiny", "max_tokens": 4,
            "messages": [{"role": "user", "content": "hello"}]}  # fmt: skip
    answer = httpx.post(f"{cluster['gateway']}/v1/chat/completions", json=body, headers=headers,
                        timeout=120)  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-correlation-id"] == request_id
    writers = wait_for_lines(logs, request_id, {"gateway", "model replica"})
    assert writers == {"gateway": {"prsm.gateway"}, "model replica": {"prsm.model"},
                       "scheduler": set(), "orchestrator": set(), "agent": set()}, (
        lines_with(logs, request_id))  # fmt: skip
