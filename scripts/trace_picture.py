"""Draw docs/img/trace.svg: a real trace of one SDK call through `layotto serve` into Redis
and PostgreSQL, received by the in-process OTLP collector and drawn as a waterfall.

    scripts/backends up redis postgres
    python scripts/trace_picture.py [OUTPUT]
"""

from __future__ import annotations

import asyncio
import html
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from layotto.client import RuntimeClient
from layotto.tracing import Tracing, TracingSettings
from layotto.tracing.testing import OtlpReceiver, ReceivedSpan

PG = "host=127.0.0.1 port=5432 user=layotto password=layotto dbname=layotto"
COLOURS = {"shop-app": "#4c78a8", "layotto-runtime": "#f58518"}
BACKEND_COLOUR = "#54a24b"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def make_trace(address: str, otlp: OtlpReceiver) -> None:
    tracing = Tracing(TracingSettings(exporters=("otlp",), service_name="shop-app", otlp_endpoint=otlp.endpoint))
    async with RuntimeClient(address, interceptors=tracing.client_interceptors(address)) as client:
        for _ in range(20):  # until the runtime is up
            try:
                await client.state.save("redis", "order-7", {"state": "paid"})
                break
            except Exception:
                await asyncio.sleep(0.5)
        with tracing.tracer.start_as_current_span("checkout"):
            await client.state.save("redis", "order-7", {"state": "shipped"})
            await client.state.get("postgresql", "customer-3")
    tracing.shutdown()


def depth(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> int:
    level = 0
    while span.parent_span_id in by_id:
        span, level = by_id[span.parent_span_id], level + 1
    return level


def draw(spans: list[ReceivedSpan]) -> str:
    by_id = {s.span_id: s for s in spans}
    ordered = sorted(spans, key=lambda s: (s.start_ns, depth(s, by_id)))
    start, end = min(s.start_ns for s in spans), max(s.end_ns for s in spans)
    width, label_width, row = 900, 380, 26
    scale = (width - label_width - 20) / max(end - start, 1)
    rows = []
    for i, span in enumerate(ordered):
        y = 40 + i * row
        x = label_width + (span.start_ns - start) * scale
        bar = max((span.end_ns - span.start_ns) * scale, 2)
        colour = BACKEND_COLOUR if "db.system" in span.attributes else COLOURS.get(span.service, "#999")
        label = f"{span.service}: {span.name}"
        millis = (span.end_ns - span.start_ns) / 1e6
        rows.append(
            f'<text x="{8 + 14 * depth(span, by_id)}" y="{y + 15}" font-size="12">{html.escape(label)}</text>'
            f'<rect x="{x:.1f}" y="{y + 3}" width="{bar:.1f}" height="16" fill="{colour}" rx="2"/>'
            f'<text x="{x + bar + 4:.1f}" y="{y + 15}" font-size="11" fill="#555">{millis:.2f} ms</text>'
        )
    height = 50 + len(ordered) * row
    title = f"trace {ordered[0].trace_id}: SDK → runtime → Redis and PostgreSQL"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 80}" height="{height}" font-family="sans-serif">'
        f'<rect width="100%" height="100%" fill="white"/>'
        f'<text x="8" y="22" font-size="13" font-weight="bold">{html.escape(title)}</text>{"".join(rows)}</svg>\n'
    )


def main() -> int:
    output = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img/trace.svg")
    with OtlpReceiver() as otlp, tempfile.TemporaryDirectory() as tmp:
        config = {
            "tracing": {"exporters": ["otlp"], "otlp_endpoint": otlp.endpoint, "service_name": "layotto-runtime"},
            "state": {
                "redis": {"type": "redis", "metadata": {"redisHost": "127.0.0.1:6379"}},
                "postgresql": {"type": "postgresql", "metadata": {"connectionString": PG}},
            },
        }
        path = Path(tmp) / "runtime.yaml"
        path.write_text(yaml.safe_dump(config))
        address = f"127.0.0.1:{free_port()}"
        command = [sys.executable, "-m", "layotto.server", "serve", "-c", str(path), "--grpc-address", address]
        command += ["--http-address", f"127.0.0.1:{free_port()}", "--data-dir", tmp, "--log-level", "WARNING"]
        runtime = subprocess.Popen(command)
        try:
            asyncio.run(make_trace(address, otlp))
            spans = otlp.wait_for(lambda got: any(s.name == "checkout" for s in got))
            time.sleep(1.5)  # the runtime's batch
            checkout = next(s for s in otlp.items if s.name == "checkout")
            spans = [s for s in otlp.items if s.trace_id == checkout.trace_id]
        finally:
            runtime.send_signal(signal.SIGTERM)
            runtime.wait(20)
    output.write_text(draw(spans))
    print(f"wrote {output} ({len(spans)} spans)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
