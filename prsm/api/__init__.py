"""The wire models of PRSM's HTTP API — requests, responses, errors — shared by the
gateway's routes, the SDK (``prsm.client``) and the CLI. Pydantic and the domain only:
importing them loads no web framework, Ray, metrics or token code."""
