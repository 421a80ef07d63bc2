"""The Grafana dashboard, the Prometheus scrape configuration and the alert rules: the
dashboard is valid, each panel has a title and queries on the datasource variable, and every
query is valid PromQL; promtool accepts the rules and the configuration (the repository's and
the one `prsm up` writes for its platform); every metric PRSM records is on the dashboard or in
an alert rule; and the metrics' two sinks and helpers record what they say."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import prometheus_client
import yaml

from prsm.cli import observability
from prsm.config import Settings
from prsm.domain import events as ev
from prsm.observability import metrics
from prsm.service_layer.runtime_views import AgentView
from tests.dashboards import DASHBOARD, PROMETHEUS_DIR, panel_queries, panels, require

ALERTS = PROMETHEUS_DIR / "alerts.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("promtool"), *args], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def test_the_dashboard_has_titled_panels_querying_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    shown = panels()
    assert len(shown) >= 20
    for panel in shown:
        assert panel["title"], panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        targets = panel["targets"]
        assert isinstance(targets, list) and targets, panel["title"]
        for target in targets:
            assert target["expr"].strip() and target["refId"], panel["title"]
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Gateway", "Tasks", "Agents", "Inference", "vLLM engines", "Rollouts",
                    "Access", "Event store"]  # fmt: skip


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule's expression."""
    rules = {"groups": [{"name": "panels", "rules": [
        {"record": f"panel:{i}", "expr": expr} for i, (_, expr) in enumerate(panel_queries("5m"))
    ]}]}  # fmt: skip
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_the_alert_rules_and_the_scrape_config() -> None:
    done = promtool("check", "rules", str(ALERTS))
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr
    done = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_prsm_up_writes_a_scrape_config_for_its_platform(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, http_port=8123, metrics_port=9321)
    text = observability.instructions(settings)
    written = tmp_path / "prometheus.yml"
    assert str(written) in text and str(observability.DASHBOARD) in text
    assert f"GF_PATHS_PROVISIONING={observability.PROVISIONING}" in text
    config = yaml.safe_load(written.read_text())
    targets = {j["job_name"]: j["static_configs"] for j in config["scrape_configs"]}
    assert targets == {"prsm-gateway": [{"targets": ["127.0.0.1:8123"]}],
                       "ray": [{"targets": ["127.0.0.1:9321"]}]}  # fmt: skip
    assert config["rule_files"] == [str(ALERTS)]
    done = promtool("check", "config", str(written))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_metric_is_on_the_dashboard_or_in_an_alert_rule() -> None:
    queried = DASHBOARD.read_text() + ALERTS.read_text()
    names = [m.prom._name for m in vars(metrics).values() if isinstance(m, metrics._Metric)]
    assert len(names) >= 20
    missing = [n for n in names if f"ray_{n}" not in queried and f"({n})" not in queried]
    assert not missing, missing


def _sample(name: str, labels: dict[str, str]) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value(name, labels)


def test_the_helpers_record_tasks_queue_agents_and_rollouts() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    before = _sample("prsm_tasks_finished_total", {"type": "unit", "status": "FAILED"}) or 0
    metrics.task_finished(
        ev.TaskFailed(task_id="t", at=at, error="x"), "unit", at - timedelta(seconds=3)
    )
    metrics.task_finished(ev.TaskStarted(task_id="t", at=at), "unit", None)  # not an ending
    assert _sample("prsm_tasks_finished_total", {"type": "unit", "status": "FAILED"}) == before + 1
    assert _sample("prsm_task_duration_seconds_sum", {"type": "unit", "status": "FAILED"}) == 3.0

    metrics.queue([], at)
    assert (
        _sample("prsm_queue_depth", {}) == 0 and _sample("prsm_queue_oldest_age_seconds", {}) == 0
    )

    view = AgentView(id="a", type="unit-agent", status="BUSY", load=1.0, capabilities=(),
                     running=2, done=0, speed={}, node_id="n", last_heartbeat_s=None)  # fmt: skip
    metrics.agents([view], ["unit-agent", "unit-idle"])
    assert _sample("prsm_agents", {"type": "unit-agent", "status": "BUSY"}) == 1
    assert _sample("prsm_agents", {"type": "unit-agent", "status": "AVAILABLE"}) == 0
    assert _sample("prsm_agent_load", {"type": "unit-idle"}) == 0
    assert _sample("prsm_agent_load", {"type": "unit-agent"}) == 1.0


def test_an_increment_of_zero_is_taken_though_rays_counter_refuses_it() -> None:
    bound = metrics.INFERENCE_TOKENS.labels("unit-model", "v1", "out")
    bound.inc(0)  # (a response without tokens) Ray's counter alone raises ValueError
    assert _sample("prsm_inference_tokens_total", {"model": "unit-model", "version": "v1",
                                                   "direction": "out"}) == 0  # fmt: skip
    bound.inc(3)
    assert _sample("prsm_inference_tokens_total", {"model": "unit-model", "version": "v1",
                                                   "direction": "out"}) == 3  # fmt: skip
