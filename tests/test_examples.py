"""The deployment examples stay true to the code: the config loads, the metrics exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from memshift.config.load import load_settings
from memshift.proxy.metrics import ProxyMetrics

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _exposed() -> set[str]:
    """Every series name memshift's proxy can expose."""
    names = set()
    for metric in ProxyMetrics().registry.collect():
        names.add(metric.name)
        names |= {f"{metric.name}{suffix}" for suffix in ("_total", "_bucket", "_sum", "_count")}
    return names


def test_the_example_config_loads() -> None:
    env = {
        "MEMSHIFT_ADMIN_TOKEN": "a",
        "MEMSHIFT_LEGACY_SERVICE_TOKEN": "b",
        "MEMSHIFT_NEW_SERVICE_TOKEN": "c",
    }
    settings = load_settings(EXAMPLES / "memshift.toml", env=env)
    assert (3, "http://new:8102") == (len(settings.routing.steps), settings.stores["new"].url)
    assert ("a", "b") == (settings.admin.token, settings.stores["legacy"].token)


def test_alerts_and_the_dashboard_name_metrics_memshift_exposes() -> None:
    exposed = _exposed()
    texts = [
        (EXAMPLES / "alerts.yml").read_text(),
        json.dumps(json.loads((EXAMPLES / "grafana-dashboard.json").read_text())),
    ]
    named = {m for text in texts for m in re.findall(r"memshift_[a-z_]+", text)}
    assert named and named <= exposed, sorted(named - exposed)
