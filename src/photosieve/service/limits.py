"""Request body size limit as a pure ASGI middleware: refuse before reading everything.

A declared `Content-Length` over the limit is answered 413 before a byte of the body is read; a
streamed (chunked) body is counted as it arrives and cut off at the limit: the client gets the
413, the app sees a disconnect (and `scope[BODY_TOO_LARGE]` is true, so a route can tell why)
and whatever it then sends is dropped. A `ClientDisconnect` the cut-off causes is expected, not
an error: it is swallowed here instead of logged as a server error with a traceback.
"""

from __future__ import annotations

import json

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_TOO_LARGE = "photosieve.body_too_large"  # scope key set when the limit cut a body off


class BodySizeLimit:
    """Answer 413 `{"detail": {"reason": "too_large", ...}}` for bodies over `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _body(self) -> bytes:
        detail = {
            "reason": "body_too_large",
            "message": f"request body is larger than {self.max_bytes} bytes",
        }
        return json.dumps({"detail": detail}).encode()

    async def _reject(self, send: Send) -> None:
        body = self._body()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._reject(send)
                    return
        received = 0
        rejected = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    rejected = True
                    scope[BODY_TOO_LARGE] = True
                    if not response_started:
                        await self._reject(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if rejected:
                return  # the 413 went out already
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except ClientDisconnect:
            if not rejected:
                raise
