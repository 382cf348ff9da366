"""The HTTP server stack `photosieve serve` runs: uvicorn with the C HTTP parser (httptools) and
event loop (uvloop), which uvicorn picks by itself when they are installed. With the pure-Python
h11 parser and asyncio the same service served 10-19% fewer uploads a second at 16 clients
(`bench/service_latency.py`, session 5), so a missing dependency is a silent slowdown: this test
makes it a failure. A real server answers a real request on that stack.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


def test_uvicorn_resolves_to_httptools() -> None:
    from uvicorn.config import Config

    async def app(scope: object, receive: object, send: object) -> None:  # pragma: no cover
        raise AssertionError("not called")

    config = Config(app, http="auto", loop="auto")  # what `photosieve serve` passes (defaults)
    config.load()
    assert config.http_protocol_class.__name__ == "HttpToolsProtocol"


def test_a_real_request_is_answered_on_that_stack() -> None:
    import asyncio

    import uvicorn

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        loop = type(asyncio.get_running_loop()).__module__  # the loop serving this request
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": loop.encode()})

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        assert config.http_protocol_class.__name__ == "HttpToolsProtocol"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := client.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply
        body = reply.split(b"\r\n\r\n", 1)[1]
        assert b"\r\nuvloop\r\n" in body, reply  # chunked: the loop's module, uvloop
    finally:
        server.should_exit = True
        thread.join(30)
