"""common/metrics.py's multiprocess value class writes what prometheus-client's own would."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector

from common import metrics


def test_the_multiprocess_values_write_the_files_as_prometheus_client_does(tmp_path, monkeypatch):
    """The same operations, through the value cells the request path writes and through the library's own
    observe(), with the stock class and with ours: the same exposition."""

    def exposition(directory: Path, value_class) -> dict:
        directory.mkdir()
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
        monkeypatch.setattr(values, "ValueClass", value_class)
        counter = Counter("t_calls_total", "Calls.", ("kind",), registry=None)
        gauge = Gauge("t_open", "Open.", ("kind",), registry=None, multiprocess_mode="livesum")
        latest = Gauge("t_until", "Until.", registry=None, multiprocess_mode="livemax")
        histogram = Histogram("t_seconds", "Time.", ("kind",), registry=None, buckets=(0.1, 1, 10))
        for n in range(300):  # enough series to grow a file past its first map
            kind = f"k{n % 150}"
            metrics._cell(counter, kind).inc(n)
            metrics._cell(gauge, kind).inc(1)
            metrics._cell(gauge, kind).inc(-1 if n % 3 else 0)
            metrics._cell(histogram, kind).observe(n / 37)
            histogram.labels(kind).observe(0.05)  # the library's own path, on the same values
        metrics._cell(latest).set(12.5)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(directory))
        return {(s.name, frozenset(s.labels.items())): s.value for family in registry.collect()
                for s in family.samples}

    stock = exposition(tmp_path / "stock", values.MultiProcessValue())
    ours = exposition(tmp_path / "ours", metrics._multiprocess_value_class())
    assert len(stock) > 1000
    assert ours == stock
