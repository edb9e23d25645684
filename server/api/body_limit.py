"""Refuse an HTTP request body over a size limit before anything reads it whole.

FastAPI reads and parses a JSON body before it runs the route's dependencies, the API
key check included: without this, anyone who can reach the port could make the process
that also answers door taps read and parse a body of any size. This ASGI middleware sits
outside the whole app:

- a `Content-Length` over the limit gets 413 at once, and not a byte of the body is read
  (uvicorn then closes the connection instead of reading the rest);
- a body without a length (chunked) is counted as it streams in; at the first chunk past
  the limit this answers 413 itself, tells the app the client went away, and drops
  whatever the app answers to that;
- a `Content-Length` that is not a number gets 400.

Refusals are counted (`BodyLimitStats`, `ruche_http_body_refused_total`) and logged a few
a window (`RefusalLog`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ruche.refusals import RefusalLog

log = logging.getLogger(__name__)


@dataclass
class BodyLimitStats:
    refused: dict[str, int] = field(default_factory=dict)
    """Requests refused, by reason: `too_large`, `bad_length`."""


class BodyLimit:
    """ASGI middleware: request bodies of at most `limit` bytes."""

    def __init__(self, app: ASGIApp, *, limit: int, stats: BodyLimitStats) -> None:
        self.app = app
        self.limit = limit
        self.stats = stats
        self._refusals = RefusalLog(log, "request")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await self._refuse(scope, send, 400, "bad_length", "Content-Length is not a number")
            return
        if declared is not None and declared > self.limit:
            await self._refuse(scope, send, 413, "too_large",
                               f"a body of {declared} bytes; at most {self.limit}")  # fmt: skip
            return
        received = 0
        started = cut_off = False

        async def counted() -> Message:
            nonlocal received, cut_off
            if cut_off:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    cut_off = True
                    if not started:
                        await self._refuse(scope, send, 413, "too_large",
                                           f"a streamed body past {self.limit} bytes")  # fmt: skip
                    # The app stops reading: no more of the body is taken off the socket.
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if cut_off:
                return  # the app's answer to a body it never got whole: ours went out
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted, tracked)

    async def _refuse(self, scope: Scope, send: Send, code: int, reason: str, why: str) -> None:
        self.stats.refused[reason] = self.stats.refused.get(reason, 0) + 1
        where = f"{scope.get('method', '')} {scope.get('path', '')}"
        self._refusals.refused(reason, where, why)
        detail = (
            f"request body too large: at most {self.limit} bytes"
            if code == 413
            else "Content-Length must be a whole number of bytes"
        )
        body = json.dumps({"detail": detail}).encode()
        await send({
            "type": "http.response.start",
            "status": code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    """The declared length; None without one; -1 when it is not a number."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None
