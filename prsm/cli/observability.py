"""Where PRSM's Grafana dashboard, Prometheus scrape configuration and alert rules are
(``cluster/`` of the source tree), and a scrape configuration for the platform ``prsm up``
started: the repository's, with this platform's gateway address and Ray metrics port."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from prsm.config import Settings

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
DASHBOARD = CLUSTER / "grafana" / "prsm.json"
PROVISIONING = CLUSTER / "grafana" / "provisioning"
SCRAPE_CONFIG = CLUSTER / "prometheus" / "prometheus.yml"
ALERT_RULES = CLUSTER / "prometheus" / "alerts.yml"


def prometheus_config(settings: Settings) -> dict[str, Any]:
    """The repository's scrape configuration aimed at this platform: its gateway (scheme,
    host and port), the local Ray head's metrics export port, the alert rules by full path."""
    config: dict[str, Any] = yaml.safe_load(SCRAPE_CONFIG.read_text())
    config["rule_files"] = [str(ALERT_RULES)]
    gateway = urlsplit(settings.gateway_url)
    targets = {"prsm-gateway": gateway.netloc, "ray": f"127.0.0.1:{settings.metrics_port}"}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        if job["job_name"] == "prsm-gateway":
            job["scheme"] = gateway.scheme
    return config


def write_prometheus_config(settings: Settings) -> Path | None:
    """Write ``prometheus.yml`` for this platform into its data dir; None when PRSM runs from
    an installed package without the source tree's ``cluster/``."""
    if not SCRAPE_CONFIG.exists():
        return None
    path = settings.data_dir / "prometheus.yml"
    path.write_text(yaml.safe_dump(prometheus_config(settings), sort_keys=False))
    return path


def instructions(settings: Settings) -> str:
    """What ``prsm up`` prints about metrics: the files, and how to start Prometheus and
    Grafana with them."""
    config = write_prometheus_config(settings)
    if config is None:
        return "Metrics: the gateway's /metrics, and Ray's metrics export on port " + (
            f"{settings.metrics_port} (the dashboard and alert rules are in the source tree's"
            " cluster/)"
        )
    tsdb = settings.data_dir / "prometheus-data"
    return f"""Metrics (Prometheus scrape config, alert rules, Grafana dashboard):
  {config}   (from {SCRAPE_CONFIG}; rules {ALERT_RULES})
  {DASHBOARD}
  prometheus --config.file={config} --storage.tsdb.path={tsdb} \\
    --web.listen-address=127.0.0.1:9090
  PROMETHEUS_URL=http://127.0.0.1:9090 PRSM_GRAFANA_DASHBOARDS={DASHBOARD.parent} \\
    GF_PATHS_PROVISIONING={PROVISIONING} grafana-server --homepath /usr/share/grafana"""
