"""Serve the example components on Unix sockets until SIGTERM or SIGINT.

    python -m layotto_pluggable_memory --folder /tmp/dapr-components-sockets

serves ``memstore.sock`` (a state store declaring ETAG and TRANSACTIONAL), ``membus.sock`` (a
pub/sub broker) and ``memqueue.sock`` (an input and output binding over a queue) in the folder; a
runtime's config then names them as ``type: memstore``, ``type: membus`` and ``type: memqueue``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from contextlib import AsyncExitStack
from pathlib import Path

from layotto_pluggable_memory.bindings import MemoryQueueBinding, serve_binding
from layotto_pluggable_memory.pubsub import MemoryPubSubComponent, serve_pubsub
from layotto_pluggable_memory.state import MemoryStateComponent, serve_state

log = logging.getLogger("layotto_pluggable_memory")


async def serve(folder: Path, state: str, pubsub: str, binding: str) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        if state:
            socket = folder / f"{state}.sock"
            await stack.enter_async_context(serve_state(socket, MemoryStateComponent(["ETAG", "TRANSACTIONAL"])))
            log.info("state store on %s", socket)
        if pubsub:
            socket = folder / f"{pubsub}.sock"
            await stack.enter_async_context(serve_pubsub(socket, MemoryPubSubComponent()))
            log.info("pub/sub on %s", socket)
        if binding:
            socket = folder / f"{binding}.sock"
            await stack.enter_async_context(serve_binding(socket, MemoryQueueBinding()))
            log.info("binding on %s", socket)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default="/tmp/dapr-components-sockets", help="the sockets folder")
    parser.add_argument("--state", default="memstore", help="the state store's socket name ('' for none)")
    parser.add_argument("--pubsub", default="membus", help="the pub/sub broker's socket name ('' for none)")
    parser.add_argument("--binding", default="memqueue", help="the binding's socket name ('' for none)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    Path(args.folder).mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(Path(args.folder), args.state, args.pubsub, args.binding))


if __name__ == "__main__":
    main()
