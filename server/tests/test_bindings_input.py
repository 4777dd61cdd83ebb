"""Input bindings delivered to the app: a cron binding fires to a SubscriberApp (the SDK's app
side, serving Dapr's AppCallback), and the app's reply goes on to an output binding."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from test_bindings import http_target

from layotto.client import BindingEvent, BindingReply, SubscriberApp
from layotto.server import Runtime
from layotto.server.components.bindings.cron import Schedule
from layotto.server.config import from_mapping


async def test_cron_fires_to_the_app_and_the_reply_goes_to_an_output_binding(tmp_path: Path) -> None:
    runner, url, received = await http_target()
    events: asyncio.Queue[BindingEvent] = asyncio.Queue()
    app = SubscriberApp()

    @app.binding("tick")
    async def on_tick(event: BindingEvent) -> BindingReply:
        await events.put(event)
        return BindingReply(to=("web",), data=b"tock")

    @app.binding("not-configured")
    async def never(event: BindingEvent) -> None:
        raise AssertionError("no such binding is configured")

    try:
        async with app.serve("127.0.0.1:0") as port:
            config: Any = from_mapping(
                {
                    "data_dir": str(tmp_path),
                    "grpc_address": "127.0.0.1:0",
                    "http_address": "127.0.0.1:0",
                    "app_callback_address": f"127.0.0.1:{port}",
                    "bindings": {
                        "tick": {"type": "cron", "metadata": {"schedule": "@every 200ms"}},
                        "idle": {"type": "cron", "metadata": {"schedule": "@every 1h"}},
                        "web": {"type": "http", "metadata": {"url": url}},
                    },
                }
            )
            async with Runtime(config) as rt:
                first = await asyncio.wait_for(events.get(), 10)
                second = await asyncio.wait_for(events.get(), 10)
                assert first.name == second.name == "tick" and first.data == b""
                assert first.metadata["timeZone"] == "Local" and first.metadata["readTimeUTC"].endswith(" +0000 UTC")
                assert rt.app_bindings is not None and rt.app_bindings.readers.reading == ["tick"]
                for _ in range(100):
                    if received:
                        break
                    await asyncio.sleep(0.05)
                assert received[0]["method"] == "POST" and received[0]["body"] == b"tock"
    finally:
        await runner.cleanup()


def test_schedules_take_dapr_syntax() -> None:
    start = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert Schedule("@every 1m30s").next_after(start) == start + dt.timedelta(seconds=90)
    assert Schedule("*/15 * * * * *").next_after(start) == start + dt.timedelta(seconds=15)  # seconds first
    assert Schedule("*/5 * * * *").next_after(start) == start + dt.timedelta(minutes=5)
    assert Schedule("@hourly").next_after(start) == start + dt.timedelta(hours=1)
    for bad in ("every 1s", "@every 0s", "* * *", "61 * * * * *"):
        try:
            Schedule(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
