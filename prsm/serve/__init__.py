"""Ray Serve: the gateway (FastAPI) and, later, model deployments and the canary router.

Importing this package imports no Ray; only ``prsm.serve.deployment`` does."""
