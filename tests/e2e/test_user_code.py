"""Your own code on `prsm up`, through the SDK and the CLI: the example SIR package built as
a wheel here and shipped with `runtime_env` pip, the same folder shipped as a working_dir,
a skill registered by an operator and run by another user of the tenant (invisible to
another tenant), the scopes that refuse, bad code contained — a skill that raises, hangs,
kills its worker, returns the wrong shape, does not import, or needs a pip package that
does not install fails its task clearly while another tenant's task finishes — and a 5 MB
result stored by content and streamed back byte for byte."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prsm.client import PrsmAPIError, PrsmClient
from prsm.domain.tasks import TaskStatus
from tests.e2e.cli import platform_env, prsm, run

ROOT = Path(__file__).resolve().parents[2]
SIR = [{"beta": b, "gamma": 0.1} for b in (0.2, 0.3, 0.5)]
SCHEMA = json.dumps({"type": "object", "required": ["beta", "gamma"]})


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("user-code")
    env = platform_env(tmp / "data", PRSM_AGENTS='{"compute": 1, "simulation": 1}',
                       PRSM_DEFAULT_MODEL="", PRSM_TASK_MAX_ATTEMPTS="2")  # fmt: skip
    out = prsm(env, "up")
    found = re.search(r"export PRSM_TOKEN=(\S+)", out)
    assert found, out
    url = f"http://127.0.0.1:{env['PRSM_HTTP_PORT']}"
    package = tmp / "sirmodel"  # a copy: building leaves build/ and *.egg-info behind
    shutil.copytree(ROOT / "examples" / "sirmodel", package)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", str(package), "-w", str(tmp / "dist")],
                   check=True, timeout=300)  # fmt: skip
    shutil.rmtree(package / "build", ignore_errors=True)
    [wheel] = (tmp / "dist").glob("sirmodel-0.1.0-*.whl")

    def user(name: str, tenant: str, role: str) -> PrsmClient:
        tok = prsm(env, "token", "--user", name, "--tenant", tenant, "--role", role).strip()
        return PrsmClient(url, tok, timeout=60)

    try:
        yield {
            "env": {**env, "PRSM_URL": url},
            "operator": user("olga", "lab", "operator"),
            "user": user("ann", "lab", "user"),
            "other": user("eve", "elsewhere", "user"),
            "wheel": wheel,
            "folder": package,
            "tmp": tmp,
        }
    finally:
        subprocess.run([sys.executable, "-m", "prsm", "down"], env=env, timeout=300, check=False)


def watch(env: dict[str, str], client: PrsmClient, task_id: str) -> Any:
    """Follow the task with the CLI until it ends (the token: the client's own); it exits 1
    for a task that did not succeed."""
    token = client._http.headers["Authorization"].removeprefix("Bearer ")
    done = run({**env, "PRSM_TOKEN": token}, "tasks", "watch", task_id, "--json")
    assert done.returncode in (0, 1), done.stderr
    [task] = json.loads(done.stdout)
    assert (done.returncode == 0) == (task["status"] == "SUCCEEDED")
    return task


def test_the_example_package_runs_as_a_wheel_a_folder_and_a_registered_skill(
    platform: dict[str, Any],
) -> None:
    env, op, ann, eve = (platform[k] for k in ("env", "operator", "user", "other"))
    wheel, folder = str(platform["wheel"]), str(platform["folder"])

    # A wheel built here, pip-installed into the task's own agents (SDK).
    by_pip = op.map("sirmodel.core:simulate", SIR, runtime_env={"pip": [wheel]})
    done = watch(env, op, by_pip.id)
    assert done["status"] == "SUCCEEDED", done["error"]
    assert [round(o["r0"], 6) for o in done["result"]["outputs"]] == [2.0, 3.0, 5.0]
    shown = op.get(by_pip.id)
    assert shown.skills is not None and shown.skills[0].origin == "reference"
    assert shown.runtime_env is not None and shown.runtime_env["pip"][0].endswith(".whl")
    assert shown.ran_on and all(p.bundle == 0 for p in shown.ran_on)  # its own agent

    # The folder itself, uploaded as the working_dir (CLI).
    params = json.dumps({"skill": "sirmodel.core:simulate", "items": SIR})
    token = op._http.headers["Authorization"].removeprefix("Bearer ")
    cli = {**env, "PRSM_TOKEN": token}
    [by_dir] = json.loads(prsm(cli, "submit", "map", "--params", params, "--runtime-env",
                               json.dumps({"working_dir": folder}), "--json"))  # fmt: skip
    assert watch(env, op, by_dir["id"])["result"] == done["result"]  # the same numbers

    # Registered by the operator (CLI), run by another user of the tenant (SDK).
    prsm(cli, "skills", "register", "sir.simulate", "1.0.0", "sirmodel.core:simulate",
         "--runtime-env", json.dumps({"pip": [wheel]}), "--capability", "simulation",
         "--input-schema", SCHEMA, "--timeout-s", "60")  # fmt: skip
    listed = {(s.name, s.version) for s in ann.skills()}
    assert ("sir.simulate", "1.0.0") in listed and ("math.square", "0.1.0") in listed
    ran = ann.map("sir.simulate", SIR)
    assert watch(env, ann, ran.id)["result"] == done["result"]
    [used] = ann.get(ran.id).skills or []
    assert (used.name, used.version, used.origin) == ("sir.simulate", "1.0.0", "registered")
    assert used.code_hash == ann.skill("sir.simulate")[0].code_hash

    # Another tenant sees none of it; a user may not ship code; bad items are refused.
    with pytest.raises(PrsmAPIError) as hidden:
        eve.skill("sir.simulate")
    assert hidden.value.status == 404
    with pytest.raises(PrsmAPIError) as unknown:
        eve.map("sir.simulate", SIR)
    assert unknown.value.status == 422
    with pytest.raises(PrsmAPIError) as shipping:
        ann.map("sirmodel.core:simulate", SIR, runtime_env={"pip": [wheel]})
    assert (shipping.value.status, shipping.value.code) == (403, "forbidden")
    with pytest.raises(PrsmAPIError) as bad_item:
        ann.map("sir.simulate", [{"beta": 0.3}])
    assert bad_item.value.status == 422 and "items[0]" in bad_item.value.message
    assert "'gamma' is a required property" in bad_item.value.message


def test_bad_code_fails_clearly_while_another_tenants_task_finishes(
    platform: dict[str, Any],
) -> None:
    env, op, eve = platform["env"], platform["operator"], platform["other"]
    code = {"working_dir": str(ROOT / "tests" / "e2e" / "user_code"),
            "env_vars": {"FLAVOUR": "mint"}}  # fmt: skip
    shipped = op.ship(code)  # uploaded once, used by every task below
    cases = {
        "raises": ("faulty:raises", [1, -2]),
        "hangs": ("faulty:hangs", [1]),
        "crashes": ("faulty:crashes", [1]),
        "wrong_output": ("faulty:wrong_output", [1]),
        "no_module": ("nosuchmodule.core:run", [1]),
        "env": ("faulty:where_am_i", [1]),
    }
    ids = {name: op.map(ref, items, runtime_env=shipped).id
           for name, (ref, items) in cases.items()}  # fmt: skip
    ids["bad_pip"] = op.map("faulty:raises", [1], runtime_env={
        "pip": ["prsm-no-such-package-anywhere==9.9.9"]}).id  # fmt: skip
    theirs = eve.map("math.square", [1, 2, 3], reduce="reduce.sum")
    assert watch(env, eve, theirs.id)["result"] == {"value": 14, "count": 3}

    done = {name: watch(env, op, task_id) for name, task_id in ids.items()}
    assert done["env"]["status"] == "SUCCEEDED", done["env"]["error"]
    assert done["env"]["result"] == {"outputs": [{"cwd_has_faulty": "True", "env": "mint"}]}
    for name in ("raises", "hangs", "crashes", "wrong_output", "no_module", "bad_pip"):
        assert done[name]["status"] == "FAILED", name
    [failed] = done["raises"]["result"]["failed"]  # item 1 (-2); item 0 succeeded
    assert failed["item"] == 1 and failed["attempts"] == 2
    assert failed["error"].startswith("ValueError: x must not be negative, got -2\n")
    assert "in _check_value" in failed["error"] and "faulty.py" in failed["error"]
    assert "timed out: ran" in done["hangs"]["error"]  # its own 2 s timeout
    assert "its worker died" in done["crashes"]["error"]
    assert "'value' is a required property" in done["wrong_output"]["error"]
    assert "No module named 'nosuchmodule'" in done["no_module"]["error"]
    assert "runtime_env could not be set up" in done["bad_pip"]["error"]
    assert "prsm-no-such-package-anywhere" in done["bad_pip"]["error"]
    assert op.ready().status == "ready"  # and the platform serves on


def test_a_5_mb_result_is_stored_by_content_and_streamed_back_byte_for_byte(
    platform: dict[str, Any],
) -> None:
    env, op = platform["env"], platform["operator"]
    code = {"working_dir": str(ROOT / "tests" / "e2e" / "user_code")}
    task = op.map("faulty:big", [5], runtime_env=code)
    done = watch(env, op, task.id)
    assert done["status"] == "SUCCEEDED", done["error"]
    assert done["result"] is None and done["result_ref"].startswith("sha256:")
    out = platform["tmp"] / "result.json"
    token = op._http.headers["Authorization"].removeprefix("Bearer ")
    prsm({**env, "PRSM_TOKEN": token}, "tasks", "result", task.id, "-o", str(out))
    data = out.read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == done["result_ref"]
    expected = base64.b64encode(random.Random(42).randbytes(5 * 2**20)).decode()
    assert json.loads(data) == {"outputs": [expected]}
    assert op.result(task.id) == {"outputs": [expected]}
    assert TaskStatus(done["status"]).is_terminal
