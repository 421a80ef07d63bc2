"""Ray: PRSM's actors and the local cluster.

The long-running actors — scheduler, orchestrator (with its agents' registry), model
controller, rollout stats — and the agents and compute-node monitors they start, each in a
module of its own, on the loop of ``loop_actor``; placement groups (``allocations``), the
cluster's nodes (``cluster_state``) and the local Ray head of ``prsm up`` (``local_cluster``).
``actors`` is the one place where ``ray.remote`` is applied, with each kind of actor's
lifetime and restart options. The private Ray APIs all of them use go through
``prsm.adapters.ray_compat``."""
