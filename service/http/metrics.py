"""Prometheus text metrics, kept per worker process.

Each gunicorn worker counts what it served; every series carries a ``pid`` label, and a scrape is
answered by whichever worker receives it (sum over ``pid`` across scrapes, or run one worker, for
totals). Roster sizes come from the database, so they are the same from every worker.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.latency: dict[tuple[str, str], list[float]] = {}  # bucket counts, then sum, then count
        self.decisions: dict[tuple[str, str], int] = defaultdict(int)

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, method, str(status))] += 1
            row = self.latency.setdefault((endpoint, method), [0.0] * (len(BUCKETS) + 2))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    row[i] += 1
            row[-2] += seconds
            row[-1] += 1

    def count_decision(self, endpoint: str, outcome: str) -> None:
        with self._lock:
            self.decisions[(endpoint, outcome)] += 1

    def render(self, gauges: dict[str, tuple[str, float]]) -> str:
        """The exposition text; ``gauges``: name -> (help, value), e.g. the roster size."""
        pid = str(os.getpid())
        out: list[str] = []
        with self._lock:
            out += ["# HELP facerec_http_requests_total HTTP requests answered by this worker.",
                    "# TYPE facerec_http_requests_total counter"]
            for (endpoint, method, status), n in sorted(self.requests.items()):
                out.append(_line("facerec_http_requests_total", n, endpoint=endpoint, method=method,
                                 status=status, pid=pid))
            out += ["# HELP facerec_http_request_duration_seconds Request latency in this worker.",
                    "# TYPE facerec_http_request_duration_seconds histogram"]
            for (endpoint, method), row in sorted(self.latency.items()):
                labels = {"endpoint": endpoint, "method": method, "pid": pid}
                for bound, n in zip(BUCKETS, row):
                    out.append(_line("facerec_http_request_duration_seconds_bucket", n, **labels, le=str(bound)))
                out.append(_line("facerec_http_request_duration_seconds_bucket", row[-1], **labels, le="+Inf"))
                out.append(_line("facerec_http_request_duration_seconds_sum", row[-2], **labels))
                out.append(_line("facerec_http_request_duration_seconds_count", row[-1], **labels))
            out += ["# HELP facerec_decisions_total Verify and identify decisions made by this worker.",
                    "# TYPE facerec_decisions_total counter"]
            for (endpoint, outcome), n in sorted(self.decisions.items()):
                out.append(_line("facerec_decisions_total", n, endpoint=endpoint, outcome=outcome, pid=pid))
        for name, (help_text, value) in gauges.items():
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", _line(name, value)]
        return "\n".join(out) + "\n"


def _line(name: str, value: float, **labels: str) -> str:
    text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    number = int(value) if float(value).is_integer() else value
    return f"{name}{{{text}}} {number}" if text else f"{name} {number}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
