"""The metrics Service and the optional ServiceMonitor."""

from __future__ import annotations

from chartlib import NAMESPACE, VALUE_SETS, container, kinds, one, render


def test_metrics_service_selects_the_operator_pods() -> None:
    objects = render()
    service = one(objects, "Service")
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    [port] = service["spec"]["ports"]
    assert port["targetPort"] == "http-metrics" and port["port"] == 8080
    assert "http-metrics" in [p["name"] for p in container(objects)["ports"]]
    assert kinds(objects, "ServiceMonitor") == []


def test_service_monitor() -> None:
    objects = render(VALUE_SETS["everything"])
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "30s")
    assert service["spec"]["ports"][0]["port"] == 9090
    assert service["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}


def test_no_metrics_service() -> None:
    assert kinds(render(VALUE_SETS["no-crds-no-metrics-service"]), "Service") == []
