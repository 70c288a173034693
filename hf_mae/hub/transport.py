"""The HTTP stack under the local Hub: uvicorn (h11) serving an ASGI app, with the limits a server exposed to
a lab network needs, all configurable (``Limits``).

uvicorn parses requests (``Content-Length``, chunked bodies, header sizes), answers over-the-limit
connections with 503 and closes idle keep-alive connections. Added here: a deadline for a request's headers
(a client that opens connections and trickles bytes is cut off), and JSON for the 400 that uvicorn sends on
a request it cannot parse. The Hub's routes see the body through ``BodyReader``, which enforces the body-size
and stall limits as the bytes arrive.

Example:
    >>> limits = Limits(max_body_bytes=1 << 30)
    >>> limits.header_timeout, limits.max_body_bytes
    (10.0, 1073741824)
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.from_thread
import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import HubError


@dataclass(frozen=True)
class Limits:
    """What one client may take from the server. Sizes in bytes, times in seconds.

    - ``max_body_bytes``: any request body (an LFS upload, a commit with files inlined);
    - ``max_file_bytes``: one file, sent through LFS or inline;
    - ``max_json_bytes``: a JSON body (create, preupload, LFS batch, ...) and one NDJSON commit line, not
      counting the file contents it carries (those are streamed to disk);
    - ``header_timeout``: from the first byte of a request to the end of its headers;
    - ``idle_timeout``: an idle keep-alive connection, and a request body that stalls this long;
    - ``max_connections``: connections and requests in progress at once (beyond: 503).
    """

    max_body_bytes: int = 64 << 30
    max_file_bytes: int = 50 << 30
    max_json_bytes: int = 8 << 20
    max_header_bytes: int = 64 << 10
    header_timeout: float = 10.0
    idle_timeout: float = 30.0
    max_connections: int = 64


class ClientGone(Exception):
    """The client closed the connection before its request body ended."""


def _json_400(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def protocol_with_limits(limits: Limits) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a header deadline and JSON 400 answers."""

    class HubProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(limits.header_timeout, self._headers_too_slow)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()  # still no complete request head: drop the connection

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE:
                self._arm_header_timer()  # (part of) the next request's head: it has limited time to finish
            else:
                self._cancel_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            body = _json_400(f"Malformed HTTP request: {msg}")
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]
            try:
                self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers, reason=b"Bad Request")))
                self.transport.write(self.conn.send(h11.Data(data=body)))
                self.transport.write(self.conn.send(h11.EndOfMessage()))
            except h11.LocalProtocolError:
                pass  # a response had already started: just close
            self.transport.close()

    return HubProtocol


class BodyReader:
    """A request body read from a worker thread: chunks as they arrive, within the limits.

    ``receive`` is the ASGI receive callable; every chunk must come within ``idle_timeout`` seconds and the
    total may not pass ``max_bytes`` (413). ``complete`` tells whether the body was read to its end.
    """

    def __init__(self, receive: Callable[[], Any], declared: str | None, max_bytes: int, idle_timeout: float):
        self.receive, self.max_bytes, self.idle_timeout = receive, max_bytes, idle_timeout
        self.complete, self.broken, self.received = False, False, 0
        if declared is not None:
            if not declared.isascii() or not declared.isdigit():
                raise HubError(400, f"Invalid Content-Length {declared[:40]!r}: expected a byte count.")
            if int(declared) > max_bytes:
                raise HubError(413, f"Request body of {int(declared)} bytes is over this server's limit of "
                                    f"{max_bytes} bytes.")
            if int(declared) == 0:
                self.complete = True

    async def _next(self) -> tuple[bytes, bool]:
        try:
            with anyio.fail_after(self.idle_timeout):
                message = await self.receive()
        except TimeoutError:
            raise HubError(408, f"Request body stalled for {self.idle_timeout:g} s: connection closed.") from None
        if message["type"] == "http.disconnect":
            raise ClientGone()
        return message.get("body", b""), message.get("more_body", False)

    def chunks(self) -> Iterator[bytes]:
        """The rest of the body, chunk by chunk (from a worker thread). ``broken`` once the client stalled,
        left or sent too much: nothing more is read then."""
        while not self.complete and not self.broken:
            try:
                data, more = anyio.from_thread.run(self._next)
            except (HubError, ClientGone):
                self.broken = True
                raise
            self.received += len(data)
            if self.received > self.max_bytes:
                self.broken = True
                raise HubError(413, f"Request body is over this server's limit of {self.max_bytes} bytes.")
            self.complete = not more
            if data:
                yield data

    def read(self, max_bytes: int) -> bytes:
        """The whole body, refused (413) past ``max_bytes``."""
        parts, total = [], 0
        for chunk in self.chunks():
            total += len(chunk)
            if total > max_bytes:
                raise HubError(413, f"Request body is over the limit of {max_bytes} bytes for this request.")
            parts.append(chunk)
        return b"".join(parts)


class HubServer:
    """An ASGI app served by uvicorn in a background thread (``start``) or the foreground (``run``).

    ``url`` is where clients point ``HF_ENDPOINT``; ``shutdown()`` stops it (as ``http.server`` did).
    """

    def __init__(self, app: Any, host: str, port: int, limits: Limits, *, verbose: bool = False):
        self.app, self.limits = app, limits
        self.socket = socket.create_server((host, port), reuse_port=False)
        self.server_address = self.socket.getsockname()[:2]
        config = uvicorn.Config(
            app, http=protocol_with_limits(limits), lifespan="off", log_level="info" if verbose else "warning",
            access_log=verbose, limit_concurrency=limits.max_connections,
            timeout_keep_alive=limits.idle_timeout,  # type: ignore[arg-type] - a float works (call_later)
            h11_max_incomplete_event_size=limits.max_header_bytes, server_header=False, date_header=True,
            timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://{host}:{port}"

    def run(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C) or ``shutdown()``."""
        self.server.run(sockets=[self.socket])

    def start(self) -> HubServer:
        """Serve from a background thread; returns once the server accepts connections."""
        self.thread = threading.Thread(target=self.run, name="hf-mae-hub", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            raise RuntimeError("hf-mae hub: the server did not start")
        return self

    def shutdown(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=15)

    def server_close(self) -> None:
        self.socket.close()
