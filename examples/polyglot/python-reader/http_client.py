"""A small blocking HTTP client over `wasi:http/outgoing-handler` (WASI 0.2).

The host checks every request against the agent's `http` grant before it
connects; a refused request comes back as an `ErrorCode` (raised as `Err`).
This client blocks on each pollable instead of running an event loop
(componentize-py's `poll_loop` shows the `asyncio` way to run several
requests at once).
"""
from urllib.parse import urlsplit

from componentize_py_types import Err
from wit_world.imports import outgoing_handler, streams
from wit_world.imports.wasi_http_types import (
    Fields,
    IncomingBody,
    Method_Get,
    OutgoingBody,
    OutgoingRequest,
    Scheme_Http,
    Scheme_Https,
)


class HttpError(Exception):
    """The request was refused or failed; the message says why."""


def get(url: str, max_body: int = 1 << 20) -> tuple[int, bytes]:
    """GET `url`; returns the status and the body (at most `max_body` bytes)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HttpError(f"not an http(s) URL: {url}")
    request = OutgoingRequest(Fields.from_list([("accept", b"text/plain")]))
    request.set_method(Method_Get())
    request.set_scheme(Scheme_Https() if parts.scheme == "https" else Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    body = request.body()
    try:
        future = outgoing_handler.handle(request, None)
    except Err as e:
        raise HttpError(f"GET {url} refused: {describe(e.value)}") from None
    OutgoingBody.finish(body, None)

    # Wait for the response head.
    result = future.get()
    while result is None:
        pollable = future.subscribe()
        pollable.block()
        pollable.__exit__(None, None, None)
        result = future.get()
    if isinstance(result, Err):
        raise HttpError(f"GET {url}: the response was taken twice")
    if isinstance(result.value, Err):
        raise HttpError(f"GET {url} failed: {describe(result.value.value)}")
    response = result.value.value
    status = response.status()

    # Read the body to its end.
    incoming = response.consume()
    stream = incoming.stream()
    chunks, size = [], 0
    while True:
        try:
            chunk = stream.blocking_read(64 * 1024)
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                break
            raise HttpError(f"GET {url}: reading the body failed: {e.value}") from None
        size += len(chunk)
        if size > max_body:
            raise HttpError(f"GET {url}: the body is over {max_body} bytes")
        chunks.append(chunk)
    stream.__exit__(None, None, None)
    IncomingBody.finish(incoming)
    return status, b"".join(chunks)


def describe(code) -> str:
    """An `ErrorCode` as text: its case, and its payload if it has one."""
    name = type(code).__name__.removeprefix("ErrorCode_")
    value = getattr(code, "value", None)
    return name if value is None else f"{name}: {value}"
