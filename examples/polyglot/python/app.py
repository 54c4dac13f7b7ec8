"""A Python agent: counts the words of `greeter.message`, writes `py_counter.words`.

Built with componentize-py from the repository's `wit/` package (see
../README.md). Context values are MessagePack; this agent handles the two
encodings it needs by hand to stay dependency-free.
"""
import wit_world
from wit_world.imports import context, progress, log, types
from componentize_py_types import Err


def read_str(raw: bytes) -> str:
    """A MessagePack string (fixstr or str8)."""
    if raw and 0xA0 <= raw[0] <= 0xBF:
        return raw[1:].decode()
    if raw and raw[0] == 0xD9:
        return raw[2:].decode()
    raise Err(types.AgentError_InvalidInput("greeter.message is not a string"))


def write_uint(n: int) -> bytes:
    """A MessagePack unsigned integer below 65536."""
    if n < 128:
        return bytes([n])
    if n < 256:
        return bytes([0xCC, n])
    return bytes([0xCD, n >> 8, n & 0xFF])


class WitWorld(wit_world.WitWorld):
    def run(self, invocation: types.Invocation) -> None:
        progress.report(0.0, "counting")
        raw = context.get("greeter.message")
        if raw is None:
            raise Err(types.AgentError_InvalidInput("greeter.message is missing"))
        words = len(read_str(raw).split())
        context.put("py_counter.words", write_uint(words))
        log.log(log.Level.INFO, f"{words} words")
        progress.report(1.0, "done")

    def validate(self, invocation: types.Invocation, subject: str) -> types.Validation:
        return types.Validation(passed=True, findings=[])
