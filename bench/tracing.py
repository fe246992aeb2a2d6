"""Reading a trace (provider/trace.py's export): the critical path of a batch, waits by kind, round trips.

The critical path is found backwards from the end of a span: the child that finished last (before the
point reached) is on it, then the child that finished last before that child started, and so on; the time
no child covers is the span's own (`self`). For a wait span its own time is the wait; for an `http` span
the network and the registry (request out to response headers back); for a `read` span the body; for the
rest Python work or waiting for the event loop, which the trace cannot tell apart (`cpu/loop`).

A `flight` wait stands for a read another image or verifier leads (its spans are under that one): on an
image's path it counts as one round trip more.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Segment", "TraceView", "category"]


@dataclass(slots=True)
class SpanView:
    id: int
    parent: int
    kind: str
    name: str
    detail: str
    start: float  # microseconds
    end: float
    status: str | None
    children: list[SpanView] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Segment:
    """Part of a critical path: `span`'s own time from `start` to `end` (microseconds)."""

    span: SpanView
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def category(span: SpanView) -> str:
    """What a span's own time on a path was spent on."""
    if span.kind == "wait":
        return span.name
    if span.kind in ("http", "read"):
        return "network"
    return "cpu/loop"


class TraceView:
    """A trace export, indexed."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        if doc.get("format") != "countersign-trace/1":
            raise ValueError(f"not a countersign trace: format {doc.get('format')!r}")
        self.dropped = int(doc.get("dropped", 0))
        self.spans: dict[int, SpanView] = {}
        for raw in doc["spans"]:
            end = raw["end_us"] if raw["end_us"] is not None else raw["start_us"]
            self.spans[raw["id"]] = SpanView(
                raw["id"],
                raw["parent"],
                raw["kind"],
                raw["name"],
                raw["detail"],
                raw["start_us"],
                end,
                raw.get("status"),
            )
        for span in self.spans.values():
            parent = self.spans.get(span.parent)
            if parent is not None and parent is not span:
                parent.children.append(span)

    def of_kind(self, kind: str) -> list[SpanView]:
        return [s for s in self.spans.values() if s.kind == kind]

    def ancestor(self, span: SpanView, kind: str) -> SpanView | None:
        current: SpanView | None = span
        while current is not None:
            if current.kind == kind:
                return current
            current = self.spans.get(current.parent)
        return None

    def critical_path(self, span: SpanView, until: float | None = None) -> list[Segment]:
        """The segments of the longest chain of dependent spans under `span`, in time order."""
        out: list[Segment] = []
        self._walk(span, span.end if until is None else min(until, span.end), out)
        out.reverse()
        return out

    def _walk(self, span: SpanView, until: float, out: list[Segment]) -> None:
        t = until
        # Only children over by `t` can have held it up; one that started earlier but was still running
        # at `t` ran alongside (asynchronous fan-out), not before. The first pick may overrun `until` a
        # little (clock reads microseconds apart).
        slack = 1.0 if until >= span.end else 0.0
        children = [c for c in span.children if c.start < t]
        while True:
            best: SpanView | None = None
            for child in children:
                if child.end <= t + slack and (best is None or child.end > best.end):
                    best = child
            if best is None:
                break
            finish = min(best.end, t)
            if finish < t:
                out.append(Segment(span, finish, t))
            self._walk(best, finish, out)
            t = best.start
            slack = 0.0
            children = [c for c in children if c.start < t and c is not best]
        if t > span.start:
            out.append(Segment(span, span.start, t))

    # --- summaries ------------------------------------------------------------------------------------------

    def waits(self, spans: Iterable[SpanView] | None = None) -> dict[str, tuple[int, float, float]]:
        """(count, total µs, max µs) of the wait spans by kind, and `network`: http spans' time less the
        pool/connect/dns waits inside them."""
        found: dict[str, list[float]] = defaultdict(list)
        for span in self.spans.values() if spans is None else spans:
            if span.kind == "wait":
                found[span.name].append(span.duration)
            elif span.kind == "http":
                inner = sum(c.duration for c in span.children if c.kind == "wait")
                found["network"].append(span.duration - inner)
        return {k: (len(v), sum(v), max(v)) for k, v in sorted(found.items())}

    def path_by_category(self, path: Sequence[Segment]) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for segment in path:
            totals[category(segment.span)] += segment.duration
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))

    def round_trips(self, image: SpanView) -> tuple[int, int, int]:
        """(sequential http exchanges on the image's critical path, flight waits on it, all http exchanges
        under the image)."""
        path = self.critical_path(image)
        http = {s.span.id for s in path if s.span.kind == "http"}
        flights = {s.span.id for s in path if s.span.kind == "wait" and s.span.name == "flight"}
        total = 0
        stack = list(image.children)
        while stack:
            span = stack.pop()
            total += span.kind == "http"
            stack.extend(span.children)
        return len(http), len(flights), total

    def label(self, span: SpanView) -> str:
        image = self.ancestor(span, "image")
        verifier = self.ancestor(span, "verifier")
        where = []
        if image is not None:
            where.append(image.detail.rsplit("/", 1)[-1])
        if verifier is not None:
            where.append(verifier.name)
        text = f"{span.kind} {span.name}"
        if span.kind in ("registry", "read"):
            text += f" {span.detail[:40]}"
        elif span.kind == "http":
            text += " " + span.detail.split("/v2/", 1)[-1][:60]
        return text + (f"  [{' / '.join(where)}]" if where else "")


def report(view: TraceView, batch: SpanView, wall_ms: float | None = None) -> list[str]:
    """The lines `make bench` prints for one traced batch."""
    lines: list[str] = []
    path = view.critical_path(batch)
    lines.append(
        f"critical path of the batch ({batch.duration / 1000:.1f} ms"
        + (f"; untraced median {wall_ms:.1f} ms" if wall_ms is not None else "")
        + (f"; {view.dropped} spans dropped" if view.dropped else "")
        + "):"
    )
    merged: list[Segment] = []
    for segment in path:  # consecutive own time of one span, split by children, shown once
        if merged and merged[-1].span is segment.span and segment.start - merged[-1].end < 1:
            merged[-1] = Segment(segment.span, merged[-1].start, segment.end)
        else:
            merged.append(segment)
    for segment in merged:
        if segment.duration < 50:  # under 0.05 ms: noise
            continue
        lines.append(
            f"  +{(segment.start - batch.start) / 1000:7.1f} ms {segment.duration / 1000:7.2f} ms  "
            f"{category(segment.span):9} {view.label(segment.span)}"
        )
    lines.append(
        "  on the path, by kind: "
        + ", ".join(f"{k} {v / 1000:.1f} ms" for k, v in view.path_by_category(path).items())
    )
    lines.append("waits over the whole batch (count, total, max; they overlap: totals exceed wall time):")
    for kind, (count, total, longest) in view.waits().items():
        lines.append(f"  {kind:9} {count:6d}  {total / 1000:9.1f} ms  max {longest / 1000:7.2f} ms")
    images = view.of_kind("image")
    if images:
        trips = [view.round_trips(image) for image in images]
        sequential = [h + f for h, f, _ in trips]
        durations = sorted(i.duration / 1000 for i in images)
        lines.append(
            f"per image ({len(images)}): sequential round trips on its critical path (http + flight) "
            f"median {statistics.median(sequential):g}, min {min(sequential)}, max {max(sequential)}; "
            f"http exchanges led by it median {statistics.median(t[2] for t in trips):g}; "
            f"image span median {statistics.median(durations):.1f} ms, max {durations[-1]:.1f} ms"
        )
        starts = sorted((i.start - batch.start) / 1000 for i in images)
        lines.append(
            f"  images started between +{starts[0]:.1f} and +{starts[-1]:.1f} ms; "
            f"image paths by kind (median over images): "
            + ", ".join(
                f"{k} {statistics.median(v) / 1000:.1f} ms"
                for k, v in _per_image_categories(view, images).items()
            )
        )
    return lines


def _per_image_categories(view: TraceView, images: Sequence[SpanView]) -> dict[str, list[float]]:
    found: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(images))
    for index, image in enumerate(images):
        for kind, total in view.path_by_category(view.critical_path(image)).items():
            found[kind][index] = total
    return dict(sorted(found.items(), key=lambda kv: -statistics.median(kv[1])))
