"""The one place that turns plain classes into Ray actors, with their lifetime and restart
options. Everything else calls these functions.

- ``singleton``: a named, detached actor that Ray restarts whenever it dies (the model
  controller, the rollout stats, the orchestrator); a second call gets the running one.
- ``pinned``: a named, detached actor fixed to one node (a compute-node monitor), gone with
  its node;
- ``agent``: a named, detached agent actor with its agent type's resources, not restarted
  (a dead agent is replaced by a new one, under a new id, by the orchestrator);
- ``bundle_agent``: an agent placed in one bundle of a task's placement group, with that
  bundle's resources (the ones its code gets from Ray); a second call gets the running one,
  and it goes with the group.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

NAMESPACE = "prsm"


def singleton(cls: type, name: str, *args: Any, **options: Any) -> Any:
    actor_cls: Any = ray.remote(cls)
    # "DEFAULT": never inside the caller's placement group (a model replica's, which Ray
    # would otherwise capture it into, and remove with it).
    opts: dict[str, Any] = {"num_cpus": 0, "scheduling_strategy": "DEFAULT", **options}
    return actor_cls.options(
        name=name,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        **opts,
    ).remote(*args)


def pinned(cls: type, name: str, scheduling_strategy: Any, *args: Any) -> Any:
    actor_cls: Any = ray.remote(cls)
    return actor_cls.options(
        name=name,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=0,
        num_cpus=0,
        scheduling_strategy=scheduling_strategy,
    ).remote(*args)


def agent(cls: type, name: str, num_cpus: float, num_gpus: float, memory_gb: float,
          concurrency: int, *args: Any, **where: Any) -> Any:  # fmt: skip
    """``where``: extra options (a scheduling strategy, ``get_if_exists``)."""
    actor_cls: Any = ray.remote(cls)
    return actor_cls.options(
        name=name,
        namespace=NAMESPACE,
        lifetime="detached",
        max_restarts=0,
        max_concurrency=concurrency,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        memory=int(memory_gb * 2**30) or None,
        **where,
    ).remote(*args)


def lookup(name: str) -> Any | None:
    """A named actor's handle, or ``None`` if there is none."""
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None


async def answers(name: str, timeout_s: float = 2.0) -> None:
    """Readiness: the named runtime actor runs, has finished its set-up and answers within
    ``timeout_s``; otherwise ``RuntimeError`` says which of these it is not."""
    handle = await asyncio.to_thread(lookup, name)
    if handle is None:
        raise RuntimeError("not running")
    try:
        up = await asyncio.wait_for(handle.ready.remote(), timeout_s)
    except TimeoutError:
        raise RuntimeError(f"no answer in {timeout_s:g} s (restarting or stuck)") from None
    except ray.exceptions.RayError as exc:
        raise RuntimeError(f"down ({type(exc).__name__})") from None
    if not up:
        raise RuntimeError("its set-up has not finished")


def kill(name: str) -> None:
    """Kill a named actor for good, if it exists."""
    handle = lookup(name)
    if handle is not None:
        ray.kill(handle, no_restart=True)


def bundle_agent(cls: type, name: str, pg: PlacementGroup, bundle: int, num_cpus: float,
                 num_gpus: float, memory_gb: float, concurrency: int,
                 runtime_env: dict[str, Any] | None, *args: Any) -> Any:  # fmt: skip
    """``runtime_env``: the code the task ships (Ray sets it up before the actor starts)."""
    where = PlacementGroupSchedulingStrategy(
        placement_group=pg, placement_group_bundle_index=bundle,
        placement_group_capture_child_tasks=True,
    )  # fmt: skip
    extra = {"runtime_env": runtime_env} if runtime_env else {}
    return agent(cls, name, num_cpus, num_gpus, memory_gb, concurrency, *args,
                 scheduling_strategy=where, get_if_exists=True, **extra)  # fmt: skip
