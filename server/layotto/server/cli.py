"""The ``layotto`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace

from layotto.server.components.base import ConfigError
from layotto.server.config import (
    GRPC_TRANSPORTS,
    LOG_FORMATS,
    RuntimeConfig,
    TlsSettings,
    check_listen_address,
    embedded_defaults,
    load,
    socket_mode,
    split_address,
    tls_settings,
    unix_domain_socket_addresses,
    with_dapr_components,
)
from layotto.server.logs import LOG_LEVELS, configure_logging
from layotto.server.masking import mask_text, masked
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
    run.add_argument("--grpc-address", help="HOST:PORT or unix:PATH for the gRPC API (default 127.0.0.1:34904)")
    run.add_argument("--http-address", help="HOST:PORT or unix:PATH for the HTTP API (default 127.0.0.1:34999)")
    run.add_argument(
        "--unix-domain-socket",
        metavar="DIR",
        help="listen on Unix sockets in DIR instead of TCP: dapr-APPID-grpc.socket and dapr-APPID-http.socket",
    )
    run.add_argument("--unix-socket-mode", help="permissions of the socket files: 0600 (default) or 0660")
    run.add_argument("--tls-cert-file", help="PEM certificate chain of the gRPC and HTTP listeners (TLS)")
    run.add_argument("--tls-key-file", help="PEM private key of --tls-cert-file")
    run.add_argument("--tls-client-ca-file", help="PEM CA certificates clients must present a certificate of (mTLS)")
    run.add_argument("--data-dir", help="directory of embedded durable stores (default ~/.local/share/layotto)")
    run.add_argument("--app-id", help="application id (namespaces keys where a building block does)")
    run.add_argument("--app-callback", help="HOST:PORT of the app's AppCallback server (subscriptions)")
    run.add_argument("--app-protocol", choices=["grpc", "http"], help="how service invocation reaches the app")
    run.add_argument("--app-port", type=int, help="the app's HTTP port on 127.0.0.1 (--app-protocol http)")
    run.add_argument(
        "--enable-app-health-check",
        action="store_true",
        help="probe the app and hold events while it is unhealthy (app_health in the config sets the rest)",
    )
    run.add_argument("--app-health-check-path", help="the path probed on an HTTP app (default /healthz)")
    run.add_argument("--components-path", help="directory of Dapr component manifests to load as well")
    run.add_argument(
        "--grpc-transport",
        choices=GRPC_TRANSPORTS,
        help="gRPC server: native (pygrpc-native), grpcio (grpc.aio), or auto (native when installed and able); "
        "default auto, or LAYOTTO_GRPC_TRANSPORT",
    )
    run.add_argument(
        "--hot-reload",
        action="store_true",
        default=None,
        help="watch the config file and --components-path, apply component changes live (config: hot_reload)",
    )
    run.add_argument("--print-config", action="store_true", help="print the effective config as JSON and exit")
    run.add_argument("--version", action="version", version=f"layotto {_version()}")
    run.add_argument("--log-level", default="INFO", choices=LOG_LEVELS)
    run.add_argument("--log-format", choices=LOG_FORMATS, help="text (default) or json: one JSON object a line")
    again = sub.add_parser("replay", help="send captured calls (traffic_capture files) to a runtime again")
    again.add_argument("files", nargs="+", help="capture files (capture-NNNNNN.jsonl) or directories of them")
    again.add_argument("--target", required=True, help="HOST:PORT or unix:PATH of the runtime's gRPC API")
    again.add_argument("--rate", type=float, default=0.0, help="at most N calls a second (default: no limit)")
    again.add_argument("--token", help="dapr-api-token to present (default: DAPR_API_TOKEN)")
    again.add_argument("--timeout", type=float, default=10.0, help="seconds per call (default 10)")
    return parser


def _replay(args: argparse.Namespace) -> int:
    """``layotto replay``: the report on stdout; 2 for a file that cannot be read or is not a capture file."""
    from pathlib import Path

    from layotto.server.traffic.replay import replay

    if args.rate < 0 or args.timeout <= 0:
        sys.stderr.write("layotto replay: --rate must be >= 0 and --timeout > 0\n")
        return 2
    token = args.token if args.token is not None else os.environ.get("DAPR_API_TOKEN", "")
    paths = [Path(name) for name in args.files]
    try:
        report = asyncio.run(replay(paths, args.target, rate=args.rate, token=token, timeout=args.timeout))
    except (OSError, ValueError) as error:
        sys.stderr.write(f"layotto replay: {error}\n")
        return 2
    sys.stdout.write("\n".join(report.lines()) + "\n")
    return 0


def _app_health_flags(args: argparse.Namespace, config: RuntimeConfig) -> RuntimeConfig:
    """``config`` with --enable-app-health-check and --app-health-check-path applied."""
    path = args.app_health_check_path
    if path is not None and not path.startswith("/"):
        raise ConfigError(f"--app-health-check-path: expected a path starting with '/', got {path!r}")
    if not (args.enable_app_health_check or path):
        return config
    health = replace(config.app_health, path=path or config.app_health.path)
    return replace(config, app_health=replace(health, enabled=health.enabled or args.enable_app_health_check))


def effective_config(args: argparse.Namespace) -> RuntimeConfig:
    config = load(args.config) if args.config else embedded_defaults()
    flags = (
        ("--grpc-address", args.grpc_address),
        ("--http-address", args.http_address),
        ("--app-callback", args.app_callback),
    )
    for flag, value in flags:
        if value is not None:
            (split_address if flag == "--app-callback" else check_listen_address)(value, flag)
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
        log_format=args.log_format,
        hot_reload=args.hot_reload,
        tls=_tls_flags(args, config.tls),
        unix_socket_mode=socket_mode(args.unix_socket_mode, "--unix-socket-mode") if args.unix_socket_mode else None,
    )
    if args.unix_domain_socket:
        grpc_address, http_address = unix_domain_socket_addresses(args.unix_domain_socket, config.app_id)
        config = replace(config, grpc_address=grpc_address, http_address=http_address)
    config = _app_health_flags(args, config)
    try:
        config = replace(config, tracing=with_environment(config.tracing))
    except TracingConfigError as error:
        raise ConfigError(str(error)) from None
    return with_dapr_components(config)


def _tls_flags(args: argparse.Namespace, configured: TlsSettings | None) -> TlsSettings | None:
    """The config's tls section with the --tls-* flags over it; None when neither sets it."""
    flags = {"cert_file": args.tls_cert_file, "key_file": args.tls_key_file, "client_ca_file": args.tls_client_ca_file}
    given = {key: value for key, value in flags.items() if value is not None}
    if not given:
        return None
    merged = {**(configured.to_dict() if configured else {}), **given}
    for flag, key, other in (("--tls-key-file", "key_file", "cert"), ("--tls-cert-file", "cert_file", "key")):
        if not merged.get(key):
            raise ConfigError(f"{flag}: required with the {other} file (or tls.{key} in the config)")
    return tls_settings(merged, "--tls-cert-file/--tls-key-file")


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
    if args.command == "replay":
        return _replay(args)
    configure_logging(args.log_level, args.log_format or "text")
    try:
        config = effective_config(args)
        configure_logging(args.log_level, config.log_format)
        if args.print_config:
            sys.stdout.write(json.dumps(masked(config.to_dict()), indent=2) + "\n")
            return 0
        # gRPC's C core writes its own INFO lines to stderr (one per refused TLS handshake), in neither log format
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        from layotto.server.app import serve  # the whole runtime: not imported for --help or --print-config

        with asyncio.Runner(loop_factory=loop_factory(config.event_loop)) as runner:
            runner.run(serve(config, lambda: effective_config(args)))
    except ConfigError as error:
        sys.stderr.write(f"layotto: config error: {mask_text(str(error))}\n")
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
