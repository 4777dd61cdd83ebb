"""Traffic capture (Layotto's tcpcopy, at the gRPC level) and replay: see docs/observability.md."""
