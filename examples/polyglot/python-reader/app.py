"""A Python agent that uses grants: reads a granted file and calls an allowed
HTTP endpoint, then writes what it got to `py_reader.file` and `py_reader.reply`.

Its workflow (../io.yaml) grants it `/docs` (read only) and HTTP to the URL in
its config. Files are read with plain `open()` (the Python runtime's libc goes
through `wasi:filesystem`); HTTP goes through `wasi:http/outgoing-handler`
(http_client.py). Built by ../build.sh for the world `agent-http` in
../wit/polyglot.wit.
"""
import wit_world
from componentize_py_types import Err
from wit_world.imports import context, log, progress
from wit_world.imports import ensemble_agent_types as types

import http_client

DOC = "/docs/notes.md"


def fail(message: str) -> Err:
    return Err(types.AgentError_Failed(message))


def invalid(message: str) -> Err:
    return Err(types.AgentError_InvalidInput(message))


def read_str(raw: bytes, at: int) -> tuple[str, int]:
    """The MessagePack string at `raw[at:]` and the offset after it."""
    head = raw[at]
    if 0xA0 <= head <= 0xBF:
        start, size = at + 1, head & 0x1F
    elif head == 0xD9:
        start, size = at + 2, raw[at + 1]
    elif head == 0xDA:
        start, size = at + 3, int.from_bytes(raw[at + 1 : at + 3], "big")
    else:
        raise invalid(f"config: expected a string at byte {at}")
    return raw[start : start + size].decode(), start + size


def read_config(raw: bytes) -> dict[str, str]:
    """The agent's config: a MessagePack map of strings to strings."""
    if not raw or not (0x80 <= raw[0] <= 0x8F):
        raise invalid("config: expected a small map such as { url: ... }")
    config, at = {}, 1
    for _ in range(raw[0] & 0x0F):
        key, at = read_str(raw, at)
        value, at = read_str(raw, at)
        config[key] = value
    return config


def write_str(text: str) -> bytes:
    """`text` as a MessagePack string."""
    data = text.encode()
    if len(data) < 32:
        return bytes([0xA0 | len(data)]) + data
    if len(data) < 256:
        return bytes([0xD9, len(data)]) + data
    if len(data) < 65536:
        return bytes([0xDA]) + len(data).to_bytes(2, "big") + data
    return bytes([0xDB]) + len(data).to_bytes(4, "big") + data


def put(key: str, value: bytes) -> None:
    try:
        context.put(key, value)
    except Err as e:
        raise Err(types.AgentError_Context(e.value)) from None


class WitWorld(wit_world.WitWorld):
    def run(self, invocation: types.Invocation) -> None:
        url = read_config(invocation.config).get("url")
        if not url:
            raise invalid("config: `url` is missing")

        progress.report(0.0, f"reading {DOC}")
        try:
            with open(DOC, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise fail(f"reading {DOC}: {e}") from None
        put(f"{invocation.agent}.file", write_str(text))

        progress.report(0.5, f"GET {url}")
        try:
            status, body = http_client.get(url)
        except http_client.HttpError as e:
            raise fail(str(e)) from None
        if not 200 <= status < 300:
            raise fail(f"GET {url}: status {status}")
        put(f"{invocation.agent}.reply", write_str(body.decode("utf-8", "replace")))
        log.log(log.Level.INFO, f"read {len(text)} characters, received {len(body)} bytes")
        progress.report(1.0, "done")

    def validate(self, invocation: types.Invocation, subject: str) -> types.Validation:
        return types.Validation(passed=True, findings=[])
