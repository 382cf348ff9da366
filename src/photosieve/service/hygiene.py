"""Input hygiene at the edge: control characters are refused (422) before any handler runs.

One mechanism for every string a client sends, so SQLite and PostgreSQL see the same inputs
(PostgreSQL cannot store NUL in text and would answer a 500; SQLite would store it silently):

- `InputHygiene`, a pure ASGI middleware, checks the URL path and query string (no control
  character at all: they carry ids and flags) and the decoded strings of JSON and urlencoded
  form bodies (keys: none; values: none but tab, newline and carriage return, which free text
  such as an appeal reason may hold);
- `check_field` does the same for fields parsed by hand (the upload's multipart `user_id`), with
  its length limit and a reason named after the field (`user_id_too_long`);
- `SingleLine` is a Pydantic type for ids and names in JSON bodies (no control character, so
  no tab or newline either);
- `validation_error_handler` gives FastAPI's own 422s the service's error shape,
  `{"detail": {"reason", "message", "errors"}}`, and `http_error_handler` the router's plain
  404/405s (`not_found`, `method_not_allowed`).
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # C0 controls and DEL
CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # the same, less \t \n \r
REASON = "control_characters"
FORM = "application/x-www-form-urlencoded"


def _body_kind(content_type: str) -> str | None:
    """ "json", "form" or None (a body this middleware leaves to the route)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return "json"
    return "form" if media == FORM else None


def has_control(value: str, *, multiline: bool = False) -> bool:
    """Whether `value` holds a control character (tab/newline/CR allowed when `multiline`)."""
    return (CONTROL_IN_TEXT if multiline else CONTROL).search(value) is not None


def error(code: int, reason: str, message: str) -> HTTPException:
    return HTTPException(code, detail={"reason": reason, "message": message})


def check_field(name: str, value: str, *, max_chars: int, multiline: bool = False) -> str:
    """`value` stripped, or a 422 naming the field: missing, too long or control characters."""
    clean = value.strip()
    if not clean:
        raise error(422, f"missing_{name}", f"`{name}` must not be empty")
    if len(clean) > max_chars:
        raise error(
            422, f"{name}_too_long", f"`{name}` is {len(clean)} characters; at most {max_chars}"
        )
    if has_control(clean, multiline=multiline):
        raise error(422, REASON, f"`{name}` contains control characters (e.g. NUL)")
    return clean


def _single_line(value: str) -> str:
    if has_control(value):
        raise PydanticCustomError(REASON, "must not contain control characters (e.g. NUL)")
    return value


def _text(value: str) -> str:
    if has_control(value, multiline=True):
        raise PydanticCustomError(REASON, "must not contain control characters (e.g. NUL)")
    return value


SingleLine = Annotated[str, AfterValidator(_single_line)]
"""A string without any control character: ids, names."""
Text = Annotated[str, AfterValidator(_text)]
"""Free text: tab, newline and carriage return allowed, other control characters not."""


async def validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's request validation errors in the service's `{"detail": {...}}` shape."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request", "type": ""}
    reason = REASON if any(e["type"] == REASON for e in errors) else "invalid_request"
    where = ".".join(str(part) for part in first["loc"])
    detail = {"reason": reason, "message": f"{where}: {first['msg']}", "errors": errors}
    return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Every HTTP error in the same `{"detail": {"reason", "message"}}` shape: the service's own
    errors already are; the router's plain ones (404 no such route, 405 wrong method) become
    `not_found` / `method_not_allowed` with their text as the message."""
    assert isinstance(exc, StarletteHTTPException)
    detail: Any = exc.detail
    if not isinstance(detail, dict):
        reason = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        detail = {"reason": reason, "message": str(detail)}
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=exc.status_code,
                        headers=exc.headers)  # fmt: skip


def _strings(value: Any) -> list[tuple[str, bool]]:
    """Every string in a parsed JSON document, with whether it was an object key."""
    found: list[tuple[str, bool]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append((item, False))
        elif isinstance(item, dict):
            found.extend((key, True) for key in item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _body_problem(kind: str, body: bytes) -> str | None:
    """Where a JSON or urlencoded body holds a control character, or None."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None  # not our concern here: the parser answers it
    if kind == "json":
        try:
            strings = _strings(json.loads(text))
        except (ValueError, RecursionError):
            return None  # not JSON we can read: FastAPI's parser answers it
    else:
        pairs = parse_qsl(text, keep_blank_values=True)
        strings = [s for key, value in pairs for s in ((key, True), (value, False))]
    for value, is_key in strings:
        if has_control(value, multiline=not is_key):
            return "the request body"
    return None


class InputHygiene:
    """Answer 422 `control_characters` for a control character in the path, query or a text body.

    Sits inside `BodySizeLimit`, so the bodies it reads whole are already bounded.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @staticmethod
    async def _reject(send: Send, where: str) -> None:
        detail = {"reason": REASON, "message": f"{where} contains control characters (e.g. NUL)"}
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 422, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        query_strings = [s for pair in parse_qsl(query, keep_blank_values=True) for s in pair]
        if has_control(scope.get("path", "")):
            await self._reject(send, "the URL path")
            return
        if any(has_control(s) for s in query_strings):
            await self._reject(send, "the query string")
            return
        content_type = ""
        for name, value in scope.get("headers", []):
            if name == b"content-type":
                content_type = value.decode("latin-1")
        kind = _body_kind(content_type)
        if kind is None:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = bytearray()
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return  # the client left (or BodySizeLimit cut it off and answered): no reply
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        problem = _body_problem(kind, bytes(body))
        if problem is not None:
            await self._reject(send, problem)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
