"""Ray Serve: the gateway, a FastAPI application (``app``, one ``routes_*`` module per
resource) served by a Serve ingress deployment (``deployment``), and how it routes inference
to model versions (``model_catalog``). The model deployments themselves are made by the
model controller (``prsm.runtime.model_controller``) with ``prsm.adapters.inference``.

Importing this package imports no Ray; only ``prsm.serve.deployment`` does."""
