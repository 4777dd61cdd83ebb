"""The ``layotto`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import replace

from layotto.server.components.base import ConfigError
from layotto.server.config import (
    GRPC_TRANSPORTS,
    RuntimeConfig,
    embedded_defaults,
    load,
    split_address,
    with_dapr_components,
)
from layotto.server.masking import MaskingFormatter, mask_text, masked
from layotto.tracing import TracingConfigError, with_environment


def _version() -> str:
    """The installed layotto-server distribution's version, e.g. ``0.1.0``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("layotto-server")
    except PackageNotFoundError:
        return "unknown (layotto-server is not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="layotto", description="Layotto for Python: the application runtime.")
    parser.add_argument("--version", action="version", version=f"layotto {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="start the runtime (embedded defaults unless -c is given)")
    run.add_argument(
        "-c", "--config", help="YAML or JSON config file, relative to the current directory (also runtime_config.json)"
    )
    run.add_argument("--grpc-address", help="HOST:PORT for the gRPC API (default 127.0.0.1:34904)")
    run.add_argument("--http-address", help="HOST:PORT for the actuator (default 127.0.0.1:34999)")
    run.add_argument("--data-dir", help="directory of embedded durable stores (default ~/.local/share/layotto)")
    run.add_argument("--app-id", help="application id (namespaces keys where a building block does)")
    run.add_argument("--app-callback", help="HOST:PORT of the app's AppCallback server (subscriptions)")
    run.add_argument("--app-protocol", choices=["grpc", "http"], help="how service invocation reaches the app")
    run.add_argument("--app-port", type=int, help="the app's HTTP port on 127.0.0.1 (--app-protocol http)")
    run.add_argument("--components-path", help="directory of Dapr component manifests to load as well")
    run.add_argument(
        "--grpc-transport",
        choices=GRPC_TRANSPORTS,
        help="gRPC server: native (pygrpc-native), grpcio (grpc.aio), or auto (native when installed and able); "
        "default auto, or LAYOTTO_GRPC_TRANSPORT",
    )
    run.add_argument("--print-config", action="store_true", help="print the effective config as JSON and exit")
    run.add_argument("--version", action="version", version=f"layotto {_version()}")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def effective_config(args: argparse.Namespace) -> RuntimeConfig:
    config = load(args.config) if args.config else embedded_defaults()
    flags = (
        ("--grpc-address", args.grpc_address),
        ("--http-address", args.http_address),
        ("--app-callback", args.app_callback),
    )
    for flag, value in flags:
        if value is not None:
            split_address(value, flag)
    if args.app_port is not None and not 0 < args.app_port <= 65535:
        raise ConfigError(f"--app-port: expected a port number, got {args.app_port}")
    config = config.with_overrides(
        grpc_address=args.grpc_address,
        http_address=args.http_address,
        data_dir=args.data_dir,
        app_id=args.app_id,
        components_path=args.components_path,
        app_callback_address=args.app_callback,
        grpc_transport=args.grpc_transport,
        app_protocol=args.app_protocol,
        app_port=args.app_port,
    )
    try:
        config = replace(config, tracing=with_environment(config.tracing))
    except TracingConfigError as error:
        raise ConfigError(str(error)) from None
    return with_dapr_components(config)


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop for ``auto`` (when installed) and ``uvloop``; None means asyncio's own."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("event_loop: uvloop is not installed (pip install uvloop)") from None
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))  # no password logged
    logging.basicConfig(level=args.log_level, handlers=[handler])
    try:
        config = effective_config(args)
        if args.print_config:
            sys.stdout.write(json.dumps(masked(config.to_dict()), indent=2) + "\n")
            return 0
        from layotto.server.app import serve  # the whole runtime: not imported for --help or --print-config

        with asyncio.Runner(loop_factory=loop_factory(config.event_loop)) as runner:
            runner.run(serve(config))
    except ConfigError as error:
        sys.stderr.write(f"layotto: config error: {mask_text(str(error))}\n")
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
