"""uvicorn in the gateway's process and event loop, next to the gRPC server.

Started from the event loop (GatewayService.register), waited for from the loader thread
(GatewayService.load: the gateway says SERVING only once HTTP listens too), stopped from
the closing thread (GatewayService.close). uvicorn's own `serve()` is not used: it would
take over SIGINT/SIGTERM, which belong to the runtime's graceful shutdown.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)


class HttpServer:
    """uvicorn serving `app` on host:port (port 0: a free one, read from `port` once
    started); open connections get `grace_s` seconds (at least 1) at shutdown."""

    def __init__(self, app: FastAPI, host: str, port: int, grace_s: float) -> None:
        self.config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="auto",
            timeout_graceful_shutdown=max(1, int(grace_s)),
            server_header=False,
        )
        self.server = uvicorn.Server(self.config)
        self.host, self.port = host, port
        self.started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """On the event loop: bind and serve in a task; `started` resolves to the port."""
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._serve())

    async def _serve(self) -> None:
        try:
            self._socket = _bind(self.host, self.port)
            self.port = self._socket.getsockname()[1]
            self.config.load()
            self.server.lifespan = self.config.lifespan_class(self.config)
            await self.server.startup(sockets=[self._socket])
        except Exception as exc:
            self.started.set_exception(
                OSError(f"HTTP bridge could not start on {self.host}:{self.port}: {exc}")
            )
            return
        log.info(
            "http bridge serving on http://%s:%d (web page at /, API docs at /docs)",
            self.host,
            self.port,
        )
        self.started.set_result(self.port)
        await self.server.main_loop()
        await self.server.shutdown(sockets=[self._socket])

    def wait_started(self, timeout: float = 30.0) -> int:
        """From a worker thread: block until HTTP listens (or raise why it cannot)."""
        return self.started.result(timeout)

    async def stop(self) -> None:
        """On the event loop: stop taking requests and wait until the server has shut down."""
        self.server.should_exit = True
        if self._task is not None:
            await asyncio.wait({self._task})

    def stop_from_thread(self, timeout: float = 30.0) -> None:
        """From another thread: `stop` on the server's loop, waiting at most `timeout`
        seconds (TimeoutError past it); nothing if the loop is gone."""
        if self._loop is None or self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(timeout)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say TCP, and
    # without it a keep-alive reply written in two parts waits ~40 ms on delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
