"""sw8 headers, the propagators, and the settings from config and environment."""

from __future__ import annotations

import base64

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from layotto.tracing import (
    SegmentTracker,
    Sw8,
    Sw8Propagator,
    TracingConfigError,
    TracingSettings,
    from_mapping,
    with_environment,
)
from layotto.tracing._sw8 import otel_trace_id, sw_trace_id


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


AGENT_HEADER = "-".join(
    [
        "1",
        b64("a1b2c3.45.16000000000001"),
        b64("seg-7"),
        "3",
        b64("shop"),
        b64("shop@host"),
        b64("/checkout"),
        b64("127.0.0.1:34904"),
    ]
)


def test_sw8_round_trips_all_eight_fields() -> None:
    header = Sw8(True, "trace.1", "segment-9", 4, "svc", "svc@host", "GET:/x", "10.0.0.1:80")
    encoded = header.encode()
    assert encoded.count("-") == 7 and encoded.startswith("1-")
    assert Sw8.decode(encoded) == header


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "1-abc",
        "2-" + AGENT_HEADER[2:],
        AGENT_HEADER.replace("-3-", "-x-"),
        "1-!!!-" + AGENT_HEADER.split("-", 2)[2],
    ],
)
def test_malformed_sw8_headers_are_ignored(bad: str) -> None:
    assert Sw8.decode(bad) is None
    context = Sw8Propagator().extract({"sw8": bad})
    assert not trace.get_current_span(context).get_span_context().is_valid


def test_extracting_a_skywalking_agents_header_keeps_its_trace_id() -> None:
    context = Sw8Propagator().extract({"sw8": AGENT_HEADER})
    parent = trace.get_current_span(context).get_span_context()
    assert parent.is_valid and parent.is_remote and parent.trace_flags.sampled
    assert parent.trace_id == otel_trace_id("a1b2c3.45.16000000000001")
    provider = TracerProvider()
    provider.add_span_processor(SegmentTracker())
    with provider.get_tracer("t").start_as_current_span("child", context=context) as child:
        assert sw_trace_id(child.get_span_context()) == "a1b2c3.45.16000000000001", "children keep the caller's id"


def test_a_32_hex_trace_id_is_used_as_is() -> None:
    assert otel_trace_id("0af7651916cd43dd8448eb211c80319c") == 0x0AF7651916CD43DD8448EB211C80319C


def test_inject_writes_the_current_segment_and_span() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SegmentTracker())
    tracer = provider.get_tracer("t")
    carrier: dict[str, str] = {}
    with tracer.start_as_current_span("entry"), tracer.start_as_current_span("exit") as exit_span:
        exit_span.set_attribute("server.address", "10.1.2.3")
        Sw8Propagator("runtime", "runtime@h").inject(carrier)
        segment = exit_span.attributes["sw.segment_id"]  # type: ignore[attr-defined]
        trace_hex = format(exit_span.get_span_context().trace_id, "032x")
    header = Sw8.decode(carrier["sw8"])
    assert header == Sw8(True, trace_hex, str(segment), 1, "runtime", "runtime@h", "entry", "10.1.2.3")


def test_settings_from_config_and_environment() -> None:
    settings = from_mapping({"exporters": ["skywalking"], "service_name": "edge", "sampling_ratio": 0.5})
    assert settings.exporters == ("skywalking",) and settings.sampling_ratio == 0.5
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
        "OTEL_SERVICE_NAME": "sidecar",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
    }
    merged = with_environment(settings, env)
    assert merged.exporters == ("skywalking", "otlp") and merged.otlp_endpoint == "http://collector:4317"
    assert merged.service_name == "sidecar" and merged.sampling_ratio == 0.25
    sw = with_environment(TracingSettings(), {"SW_AGENT_COLLECTOR_BACKEND_SERVICES": "oap:11800", "SW_AGENT_NAME": "s"})
    assert sw.exporters == ("skywalking",) and sw.skywalking_address == "oap:11800" and sw.service_name == "s"
    assert not with_environment(merged, {"OTEL_SDK_DISABLED": "true"}).enabled
    assert not TracingSettings().enabled, "tracing is off by default"


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"exporters": ["jaeger"]}, "tracing.exporters"),
        ({"sampling_ratio": 2}, "tracing.sampling_ratio"),
        ({"colour": "red"}, "tracing.colour"),
    ],
)
def test_bad_tracing_settings_name_the_key(raw: dict[str, object], names: str) -> None:
    with pytest.raises(TracingConfigError) as caught:
        from_mapping(raw)
    assert str(caught.value).startswith(names)
