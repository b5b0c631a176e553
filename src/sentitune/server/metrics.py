"""Counters for `/metrics`, in Prometheus' text format (no dependency)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class _Histogram:
    buckets: Sequence[float]
    counts: list[int] = field(init=False)  # per bucket, not cumulative; +Inf last
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        index = next((i for i, bound in enumerate(self.buckets) if value <= bound), -1)
        self.counts[index] += 1
        self.total += value

    def exposition(self, name: str, labels: str = "") -> Iterator[str]:
        sep = "," if labels else ""
        cumulative = 0
        for bound, count in zip([*self.buckets, "+Inf"], self.counts, strict=True):
            cumulative += count
            yield f'{name}_bucket{{{labels}{sep}le="{bound}"}} {cumulative}'
        braces = f"{{{labels}}}" if labels else ""
        yield f"{name}_sum{braces} {self.total}"
        yield f"{name}_count{braces} {cumulative}"


class ServeMetrics:
    """Counters for `/metrics`, written by hand in Prometheus' text format (no dependency).

    Only touched from the event loop thread, so no locks. Per process: with several
    workers each keeps its own.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, _Histogram] = {}
        self.batch_size = _Histogram(_BATCH_BUCKETS)
        self.predictions = 0
        self.needs_review = 0

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests[endpoint, status] += 1
        self.latency.setdefault(endpoint, _Histogram(_LATENCY_BUCKETS)).observe(seconds)

    def observe_predictions(self, predictions: Iterable[dict[str, Any]]) -> None:
        for prediction in predictions:
            self.predictions += 1
            self.needs_review += bool(prediction["needs_review"])

    def exposition(self) -> str:
        # Endpoint labels come from the app's own route table (or "other"), so they never
        # need escaping.
        lines = [
            "# HELP sentitune_requests_total HTTP requests answered, by endpoint and status.",
            "# TYPE sentitune_requests_total counter",
            *(
                f'sentitune_requests_total{{endpoint="{endpoint}",status="{status}"}} {count}'
                for (endpoint, status), count in sorted(self.requests.items())
            ),
            "# HELP sentitune_request_duration_seconds Time to answer an HTTP request.",
            "# TYPE sentitune_request_duration_seconds histogram",
        ]
        for endpoint, histogram in sorted(self.latency.items()):
            lines += histogram.exposition(
                "sentitune_request_duration_seconds", f'endpoint="{endpoint}"'
            )
        review_share = self.needs_review / self.predictions if self.predictions else 0.0
        lines += [
            "# HELP sentitune_batch_size Texts per call of the model.",
            "# TYPE sentitune_batch_size histogram",
            *self.batch_size.exposition("sentitune_batch_size"),
            "# HELP sentitune_predictions_total Texts classified.",
            "# TYPE sentitune_predictions_total counter",
            f"sentitune_predictions_total {self.predictions}",
            "# HELP sentitune_needs_review_total Predictions flagged for human review.",
            "# TYPE sentitune_needs_review_total counter",
            f"sentitune_needs_review_total {self.needs_review}",
            "# HELP sentitune_review_share Share of predictions flagged for review so far.",
            "# TYPE sentitune_review_share gauge",
            f"sentitune_review_share {review_share}",
        ]
        return "\n".join(lines) + "\n"
