"""Ray: the local cluster, and (later) agent, node, orchestrator and scheduler actors.

Every Ray call of PRSM goes through a small wrapper in this package."""
