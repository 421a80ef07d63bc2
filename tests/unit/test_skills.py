"""Skills as packages declare them (the decorator), as the catalog resolves them (names and
``module:function`` references), their schemas, a task's runtime_env, the skill registry's
decisions, the result store, how the SDK packs a folder, and an agent running user code."""

from __future__ import annotations

import json
import time
import zipfile
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from prsm.adapters import skill_code
from prsm.adapters.blobs import BlobStore
from prsm.client_packages import uploads, with_refs, zip_folder
from prsm.domain import runtime_env
from prsm.domain.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from prsm.domain.identity import Principal
from prsm.domain.models import SHARED_TENANT
from prsm.domain.orchestration import TaskRun
from prsm.domain.results import digest_of
from prsm.domain.skill_registry import SkillRegistry
from prsm.domain.skills import Skill, UnknownSkill
from prsm.domain.task_types import plan
from prsm.runtime.agent import AgentWorker, SubtaskCall
from prsm.skill import skill, skills_in, spec_of

NOW = datetime(2026, 12, 2, tzinfo=UTC)
INSTALLED = skill_code.installed()


@skill("demo.half", input_schema={"type": "number"}, output_schema={"type": "number"},
       timeout_s=5)  # fmt: skip
def half(x: float) -> float:
    """x → x / 2

    More words that the doc leaves out."""
    return x / 2


def _deep(x: float) -> float:
    raise ValueError(f"no good: {x}")


def raising(x: float) -> float:
    return _deep(x)


@skill("demo.wrong", output_schema={"type": "object", "required": ["value"]})
def wrong(x: float) -> dict[str, float]:
    return {"valeu": x}


def large(n: int) -> str:
    return "y" * n


def test_the_decorator_records_a_spec_and_refuses_bad_declarations() -> None:
    spec = spec_of(half)
    assert spec is not None and (spec.name, spec.kind, spec.timeout_s) == ("demo.half", "map", 5)
    assert spec.doc == "x → x / 2" and half(4) == 2  # the function itself is unchanged
    heavy = skill("demo.heavy", resources={"cpu": 4})(lambda x: x)
    assert skill_code.as_skill(spec_of(heavy), heavy).resources == {"cpu": 4}  # type: ignore[arg-type]
    assert [s.name for s, _ in skills_in(__import__(__name__, fromlist=["x"]))] == [
        "demo.half", "demo.wrong"]  # fmt: skip
    bad: list[tuple[dict[str, Any], str]] = [
        ({"name": "Half"}, "dotted lower case"),
        ({"name": "x.y", "kind": "filter"}, "kind"),
        ({"name": "x.y", "timeout_s": 0}, "positive"),
        ({"name": "x.y", "resources": {"tpu": 1}}, "resources"),
    ]
    for given, message in bad:
        with pytest.raises(ValueError, match=message):
            skill(**given)


def test_the_catalog_resolves_names_references_to_installed_code_and_shipped_code() -> None:
    assert INSTALLED.find("math.square").origin == "installed"
    by_code = INSTALLED.find("prsm.builtin_skills.compute:square")
    assert by_code.name == "math.square" and by_code.input_schema == {"type": "number"}
    shipped = INSTALLED.find("sirmodel.core:simulate")
    assert (shipped.origin, shipped.code, shipped.ships_code) == ("reference", shipped.name, True)
    assert INSTALLED.find("mypkg.ops:total", "reduce").kind == "reduce"
    with pytest.raises(UnknownSkill, match=r"unknown map/llm skill 'nope'.*math\.square"):
        INSTALLED.find("nope", ("map", "llm"))
    with pytest.raises(UnknownSkill):
        INSTALLED.find("reduce.sum", "map")  # the wrong kind
    mine = Skill("demo.half", "compute", "map", origin="registered", version="2")
    assert INSTALLED.merged([mine]).find("demo.half").version == "2"


def test_schemas_name_the_item_and_the_field() -> None:
    sim = INSTALLED.find("sim.logistic")
    with pytest.raises(InvalidRequest, match=r"sim.logistic: items\[3\]\.r: 500 is greater"):
        sim.check_input({"r": 500}, "items[3]")
    assert sim.output_error({"final": 1.0, "peak_rate": 1.0, "t_half": 2.0}) is None
    assert "'t_half' is a required property" in (sim.output_error({"final": 1, "peak_rate": 1})
                                                  or "")  # fmt: skip
    with pytest.raises(InvalidRequest, match="names its metric"):
        plan("sweep", {"skill": "sirmodel.core:simulate", "parameter_sets": [{}]}, INSTALLED)


def test_a_runtime_env_names_uploaded_packages_and_hashes_by_content() -> None:
    ref = f"sha256:{'a' * 64}/working_dir.zip"
    wheel = f"sha256:{'b' * 64}/sirmodel-0.1.0-py3-none-any.whl"
    env = {"working_dir": ref, "pip": ["numpy>=1", wheel], "env_vars": {"A": "1"}}
    assert runtime_env.check(env) == [("sha256:" + "a" * 64, "working_dir.zip"),
                                      ("sha256:" + "b" * 64, wheel.split("/")[1])]  # fmt: skip
    assert runtime_env.code_hash(env) == runtime_env.code_hash(dict(reversed(env.items())))
    assert runtime_env.code_hash(env) != runtime_env.code_hash({**env, "pip": ["numpy>=1"]})
    for bad, message in [({"conda": "x"}, "takes"), ({"working_dir": "./src"}, "uploaded .zip"),
                         ({"pip": ["./dist/x.whl"]}, "uploaded first"),
                         ({"pip": ["--index-url=http://x"]}, "requirement"),
                         ({"env_vars": {"1X": "a"}}, "env_vars")]:  # fmt: skip
        with pytest.raises(InvalidRequest, match=message):
            runtime_env.check(bad)


def test_the_registry_keeps_versions_retires_them_and_keeps_tenants_apart() -> None:
    olga = Principal("olga", "lab", frozenset({"operator"}))
    registry = SkillRegistry("lab")
    sir = Skill("sir.simulate", "simulation", "map", code="sirmodel.core:simulate", version="1")
    assert registry.register(olga, sir, ["math.square"], NOW).origin == "registered"
    with pytest.raises(Conflict, match="versions do not change"):
        registry.register(olga, sir, [], NOW)
    with pytest.raises(Conflict, match="installed"):
        registry.register(olga, Skill("math.square", "compute", "map", code="m:f", version="1"),
                          ["math.square"], NOW)  # fmt: skip
    with pytest.raises(InvalidRequest, match="not a JSON Schema"):
        registry.register(olga, Skill("sir.x", "compute", "map", code="m:f", version="1",
                                      input_schema={"type": 3}), [], NOW)  # fmt: skip
    registry.register(olga, Skill("sir.simulate", "simulation", "map", code="m:g", version="2"),
                      [], NOW)  # fmt: skip
    assert registry.newest()["sir.simulate"].version == "2"
    registry.retire(olga, "sir.simulate", "2", NOW)
    assert registry.newest()["sir.simulate"].version == "1"
    with pytest.raises(NotFound):
        registry.retire(olga, "sir.simulate", "9", NOW)
    with pytest.raises(NotFound):  # another tenant's registry: not there for olga
        SkillRegistry("elsewhere").register(olga, sir, [], NOW)
    with pytest.raises(PermissionDenied, match="admins"):
        SkillRegistry(SHARED_TENANT).register(olga, sir, [], NOW)
    rebuilt = SkillRegistry.from_events("lab", registry.changes, len(registry.changes))
    assert rebuilt.newest() == registry.newest()


def test_the_result_store_keeps_blobs_by_content_and_splices_references(tmp_path: Path) -> None:
    blobs = BlobStore(str(tmp_path / "results"))
    digest, size = blobs.put([b"hello ", b"world"])
    assert (size, blobs.read(digest)) == (11, b"hello world")
    assert blobs.put([b"hello world"]) == (digest, 11) and blobs.exists(digest)
    assert blobs.url(digest, "/x.zip").startswith("file://") and blobs.url(digest).endswith(
        digest.removeprefix("sha256:"))  # fmt: skip
    assert blobs.keep([1, 2], 100) == [1, 2]
    ref = blobs.keep("z" * 200, 100)
    assert digest_of(ref) is not None and blobs.resolve([ref, 3]) == ["z" * 200, 3]
    doc_digest, _ = blobs.document({"outputs": [ref, {"a": 1}], "n": None})
    assert json.loads(blobs.read(doc_digest)) == {"outputs": ["z" * 200, {"a": 1}], "n": None}
    with pytest.raises(ValueError, match="not a sha256 digest"):
        blobs.read("sha256:../../etc/passwd")


def test_a_folder_packs_to_the_same_bytes_without_caches(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "core.py").write_text("X = 1\n")
    (tmp_path / "pkg" / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"\0")
    first = zip_folder(tmp_path)
    time.sleep(0.01)
    (tmp_path / "pkg" / "core.py").touch()
    assert zip_folder(tmp_path) == first  # timestamps do not count
    assert zipfile.ZipFile(BytesIO(first)).namelist() == ["working_dir/pkg/core.py"]
    [up] = uploads({"working_dir": str(tmp_path), "pip": ["numpy"]})
    assert (up.key, up.filename) == ("working_dir", "working_dir.zip")
    assert with_refs({"working_dir": str(tmp_path), "pip": ["numpy"]}, [(up, "sha256:r")]) == {
        "working_dir": "sha256:r", "pip": ["numpy"]}  # fmt: skip


def call(skill: Skill, item: Any) -> SubtaskCall:
    return SubtaskCall("lab", "ann", "t1", "0:0", skill, item)


def test_an_agent_runs_user_code_and_reports_its_failures_clearly(tmp_path: Path) -> None:
    agent = AgentWorker("a1", 2, settings={"result_store": str(tmp_path / "r"),
                                           "result_inline_max_bytes": 100})  # fmt: skip
    ref = INSTALLED.find(f"{__name__}:raising")
    [failed] = agent.run([call(ref, 3)])
    assert not failed.ok and str(failed.output).startswith("ValueError: no good: 3\n")
    assert "in _deep" in failed.output and "test_skills.py" in failed.output
    [mismatch] = agent.run([call(INSTALLED.find(f"{__name__}:wrong"), 1)])  # its mark applies
    assert not mismatch.ok and "'value' is a required property" in mismatch.output
    [missing] = agent.run([call(INSTALLED.find("nosuch.module:f"), 1)])
    assert "ModuleNotFoundError: No module named 'nosuch'" in missing.output
    [big] = agent.run([call(INSTALLED.find(f"{__name__}:large"), 500)])
    assert big.ok and digest_of(big.output) is not None  # stored, the outcome a reference
    [count] = AgentWorker("a2", 1).run([call(INSTALLED.find("text.count"), [1, 2])])
    assert (count.ok, count.output) == (True, 2)  # no reference in it: no store needed
    [square] = agent.run([call(INSTALLED.find("math.square"), 3)])
    assert (square.ok, square.output) == (True, 9)
    assert agent.heartbeat().running_for == ()  # nothing running now


def test_a_run_whose_code_cannot_start_fails_with_the_reason() -> None:
    run = TaskRun("t", plan("map", {"skill": "math.square", "items": [1, 2]}, INSTALLED), 3, 1.0)
    run.abandon("its runtime_env could not be set up: pip failed")
    assert run.finished
    ok, result, error = run.outcome()
    assert (ok, error) == (False, "its runtime_env could not be set up: pip failed")
    assert [f["item"] for f in result["failed"]] == [0, 1]
    again = TaskRun("t", plan("map", {"skill": "math.square", "items": [1, 2]}, INSTALLED), 3, 1)
    a, _ = again.take(0.0, 10)
    again.lost(a.key, alone=True)
    assert a.key in again.tried and again.attempts.get(a.key) is None  # not a try
