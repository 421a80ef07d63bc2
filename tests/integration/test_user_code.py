"""User code on a real local Ray: a task ships its code (an uploaded working_dir) and runs a
``module:function`` reference on agents of its own, recording the code it ran; and bad code
is contained — a skill that raises, hangs, kills its worker, returns the wrong shape, does
not import, or needs a pip package that does not install fails its task with a clear error
while another tenant's task runs to the end. Large outputs go to the result store."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from prsm import bootstrap
from prsm.adapters.blobs import BlobStore
from prsm.adapters.skill_code import installed
from prsm.client_packages import zip_folder
from prsm.config import Settings
from prsm.domain import commands as cmds
from prsm.domain import runtime_env
from prsm.domain.errors import InvalidRequest, PermissionDenied
from prsm.domain.identity import Principal
from prsm.domain.tasks import TaskStatus
from prsm.runtime import orchestrator, scheduler
from prsm.service_layer.messagebus import MessageBus
from tests.integration.test_orchestration import finished, wait_for

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = Principal(user_id="olga", tenant_id="lab", roles=frozenset({"operator"}))
USER = Principal(user_id="ann", tenant_id="lab", roles=frozenset({"user"}))
OTHER = Principal(user_id="bo", tenant_id="other", roles=frozenset({"user"}))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("user-code"), agents={"compute": 2},
                        task_max_attempts=2, task_retry_backoff_s=0.05, default_model="",
                        result_inline_max_bytes=1024)  # fmt: skip
    ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level=logging.ERROR)
    try:
        bootstrap.start_orchestrator(settings)
        handle = orchestrator.handle()
        assert handle is not None
        wait_for(lambda: len(ray.get(handle.agents.remote())) == 2, 120, "agents to start")
        yield settings
    finally:
        scheduler.stop()
        orchestrator.stop()
        ray.shutdown()


@pytest.fixture
async def bus(platform: Settings) -> AsyncIterator[tuple[MessageBus, BlobStore]]:
    store = await bootstrap.open_store(platform)
    blobs = BlobStore(platform.result_store_uri)
    yield MessageBus(store, store, bootstrap.utc_now, "tests", installed(), blobs), blobs
    await store.close()


def upload(blobs: BlobStore, folder: Path) -> str:
    digest, _ = blobs.put([zip_folder(folder)], "/working_dir.zip")
    return f"{digest}/working_dir.zip"


async def submit(bus: MessageBus, who: Principal, params: dict[str, Any],
                 env: dict[str, Any] | None = None, task_type: str = "map") -> str:  # fmt: skip
    spec = cmds.TaskSpec(task_type=task_type, params=params, runtime_env=env or {})
    [s] = await bus.handle(cmds.SubmitTasks(correlation_id="t", principal=who, specs=(spec,)))
    return str(s.task.task_id)


async def test_a_shipped_package_runs_its_function_and_the_task_records_the_code(
    bus: tuple[MessageBus, BlobStore],
) -> None:
    messages, blobs = bus
    env = {"working_dir": upload(blobs, ROOT / "examples" / "sirmodel")}
    items = [{"beta": b, "gamma": 0.1} for b in (0.2, 0.3, 0.5)]
    task_id = await submit(messages, OPERATOR, {"skill": "sirmodel.core:simulate",
                                                "items": items}, env)  # fmt: skip
    task = await finished(messages, task_id, 180)
    assert task.status is TaskStatus.SUCCEEDED, task.error
    outputs = task.result["outputs"]
    assert [round(o["r0"], 6) for o in outputs] == [2.0, 3.0, 5.0]
    assert 0.79 < outputs[0]["attack_rate"] < 0.80  # R0 = 2: about 80 % ever infected
    [used] = task.skills
    assert (used["origin"], used["code"]) == ("reference", "sirmodel.core:simulate")
    assert used["code_hash"] == runtime_env.code_hash(env)
    # The same folder packs to the same bytes: the same package, the same code hash.
    assert upload(blobs, ROOT / "examples" / "sirmodel") == env["working_dir"]


async def test_shipping_code_needs_skills_write_and_uploaded_packages(
    bus: tuple[MessageBus, BlobStore],
) -> None:
    messages, _ = bus
    params = {"skill": "sirmodel.core:simulate", "items": [{"beta": 0.3, "gamma": 0.1}]}
    with pytest.raises(PermissionDenied, match="skills:write"):
        await submit(messages, USER, params, {"pip": ["sirmodel"]})
    with pytest.raises(PermissionDenied, match="skills:write"):
        await submit(messages, USER, params)  # a reference is code the platform lacks
    with pytest.raises(InvalidRequest, match="was not uploaded"):
        await submit(messages, OPERATOR, params, {"working_dir": f"sha256:{'0' * 64}/x.zip"})
    with pytest.raises(InvalidRequest, match="runtime_env takes"):
        await submit(messages, OPERATOR, params, {"conda": "env.yaml"})


async def test_bad_code_fails_its_task_clearly_and_another_tenants_task_finishes(
    bus: tuple[MessageBus, BlobStore],
) -> None:
    messages, blobs = bus
    env = {"working_dir": upload(blobs, ROOT / "tests" / "integration" / "user_code"),
           "env_vars": {"FLAVOUR": "mint"}}  # fmt: skip
    cases = {
        "raises": ("faulty:raises", [1, -2]),
        "hangs": ("faulty:hangs", [1]),
        "crashes": ("faulty:crashes", [1]),
        "wrong_output": ("faulty:wrong_output", [1]),
        "no_module": ("nosuchmodule.core:run", [1]),
        "env": ("faulty:where_am_i", [1]),
    }
    ids = {name: await submit(messages, OPERATOR, {"skill": ref, "items": items}, env)
           for name, (ref, items) in cases.items()}  # fmt: skip
    bad_pip = await submit(messages, OPERATOR, {"skill": "faulty:raises", "items": [1]},
                           {"pip": ["prsm-no-such-package-anywhere==9.9.9"]})  # fmt: skip
    squares = {"skill": "math.square", "items": [1, 2, 3], "reduce": "reduce.sum"}
    others = await submit(messages, OTHER, squares, task_type="map_reduce")
    other = await finished(messages, others, 120)
    assert other.status is TaskStatus.SUCCEEDED and other.result == {"value": 14, "count": 3}

    done = {name: await finished(messages, task_id, 300) for name, task_id in ids.items()}
    assert done["env"].status is TaskStatus.SUCCEEDED, done["env"].error
    assert done["env"].result == {"outputs": [{"cwd_has_faulty": "True", "env": "mint"}]}
    for name in ("raises", "hangs", "crashes", "wrong_output", "no_module"):
        assert done[name].status is TaskStatus.FAILED, name
    [failed] = done["raises"].result["failed"]  # item 1 (-2); item 0 succeeded
    assert failed["item"] == 1 and failed["attempts"] == 2
    assert failed["error"].startswith("ValueError: x must not be negative, got -2\n")
    assert "in _check_value" in failed["error"] and "faulty.py" in failed["error"]
    assert "timed out: ran" in done["hangs"].error  # its 2 s timeout, from its decorator
    assert "its worker died" in done["crashes"].error
    assert "faulty:wrong_output returned an output that: 'value' is a required" in (
        done["wrong_output"].error or "")  # fmt: skip
    assert "ModuleNotFoundError: No module named 'nosuchmodule'" in (done["no_module"].error or "")

    pip = await finished(messages, bad_pip, 300)
    assert pip.status is TaskStatus.FAILED
    assert "runtime_env could not be set up" in (pip.error or "")
    assert "prsm-no-such-package-anywhere" in (pip.error or "")


async def test_a_large_output_is_stored_by_content_and_the_result_byte_for_byte(
    bus: tuple[MessageBus, BlobStore],
) -> None:
    messages, blobs = bus
    env = {"working_dir": upload(blobs, ROOT / "tests" / "integration" / "user_code")}
    task_id = await submit(messages, OPERATOR, {"skill": "faulty:big", "items": [5]}, env)
    task = await finished(messages, task_id, 180)
    assert task.status is TaskStatus.SUCCEEDED, task.error
    assert task.result is None and task.result_ref is not None
    document = blobs.read(task.result_ref)
    expected = base64.b64encode(random.Random(42).randbytes(5 * 2**20)).decode()
    assert json.loads(document) == {"outputs": [expected]}
    [completed] = [e for e in await messages._context.store.read_stream(f"run-{task_id}")
                   if e.event.type_name() == "SubtaskCompleted"]  # fmt: skip
    assert set(completed.event.output) == {"$result_ref", "bytes"}  # the event holds a reference
    await asyncio.sleep(0)
