"""Fuzzing the control socket (issue 21): whatever a client sends, the answer is a
documented error code or a result -- never ``Internal``, never a traceback in the
log -- and the connection keeps serving.

Three bounded runs: random bytes and random JSON requests into the request
handler directly (sans-I/O), and random bytes over a real Unix socket with a
``ping`` after them on the same connection.  The registered methods are the
daemon's own parameter handling: ``plan`` / ``apply`` from ``daemon/rpc.py``
on a daemon whose configuration directory is empty (so they answer without a
kernel), and stand-ins for the methods that take no parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mip6ctl.daemon.control import ERROR_CODES, ControlServer
from mip6ctl.daemon.rpc import rpc_apply, rpc_plan
from tests.unit.daemon.test_control import FakeDaemon, ServerThread

#: Codes a request may get: the protocol's own, minus Internal (a bug), plus what the
#: daemon's methods raise as MethodError for a request (rpc.py).
ALLOWED = (ERROR_CODES - {"Internal"}) | {"WrongConfigDir"}
METHODS = ["ping", "status", "reload", "movement", "plan", "apply"]

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,  # no .hypothesis directory in the work tree
)


async def no_params(params: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True}


def make_server(directory: Path) -> ControlServer:
    daemon = FakeDaemon(directory / "empty-config")
    daemon.config_dir.mkdir(exist_ok=True)
    server = ControlServer(directory / "c.sock")
    for name in ("status", "reload", "movement"):
        server.register(name, no_params)
    server.register("plan", lambda params: rpc_plan(daemon, params))
    server.register("apply", lambda params: rpc_apply(daemon, params))
    return server


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def watched_log() -> Iterator[Records]:
    """Every record of the process while the block runs (hypothesis and pytest's
    function-scoped caplog do not mix)."""
    handler = Records()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    bad = [r for r in handler.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [(r.name, r.getMessage()) for r in bad]


def check(answer: Any, sent: Any = None) -> None:
    """A well-formed answer: strict JSON, an id, exactly one of result / error."""
    json.dumps(answer, allow_nan=False)
    assert isinstance(answer, dict) and "id" in answer, answer
    assert ("result" in answer) != ("error" in answer), answer
    if "error" in answer:
        err = answer["error"]
        assert set(err) == {"code", "message"} and isinstance(err["message"], str), err
        assert err["code"] in ALLOWED, err
    if isinstance(sent, dict) and "error" not in answer:
        assert answer["id"] == sent.get("id")


@contextlib.contextmanager
def handler() -> Iterator[tuple[ControlServer, asyncio.AbstractEventLoop]]:
    with tempfile.TemporaryDirectory() as d:
        loop = asyncio.new_event_loop()
        try:
            yield make_server(Path(d)), loop
        finally:
            loop.close()


#: JSON-ish fragments: random bytes alone rarely get past the first character.
TOKENS = [b"{", b"}", b"[", b"]", b'"', b":", b",", b" ", b"0", b"-1", b"1.5", b"1e400", b"NaN",
          b"-Infinity", b"null", b"true", b'"id"', b'"method"', b'"params"', b'"plan"',
          b'"apply"', b'"status"', b'"config_dir"', b'"/etc/mip6"', b"\\u0000", b"\\ud800",
          b"\xff", b"\xc3", b"\xef\xbb\xbf", b"\x00", b"9" * 4400]  # fmt: skip
token_soup = st.lists(st.sampled_from(TOKENS), max_size=60).map(b"".join)


@FUZZ
@given(data=st.binary(max_size=4096) | token_soup)
def test_random_bytes(data: bytes) -> None:
    with handler() as (server, loop), watched_log():
        check(loop.run_until_complete(server.handle_line(data)))


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["", "/", "\x00", "/etc/mip6", "..", "\udc80"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
deep = st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "]" * n)
requests = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "id": json_values,
            "method": st.sampled_from(METHODS) | json_values,
            "params": json_values
            | st.dictionaries(st.sampled_from(["config_dir", "x"]), json_values, max_size=2),
        },
    ),
)


@FUZZ
@given(request=requests, nested=st.none() | deep, junk=st.sampled_from(["", " ", "\r", "\t"]))
def test_random_json_requests(request: Any, nested: str | None, junk: str) -> None:
    text = json.dumps(request)
    if nested is not None and isinstance(request, dict):
        text = text[:-1] + (", " if request else "") + f'"deep": {nested}' + "}"
    with handler() as (server, loop), watched_log():
        check(loop.run_until_complete(server.handle_line((text + junk).encode())), request)


@settings(FUZZ, max_examples=100)
@given(data=st.binary(max_size=8192))
def test_random_bytes_on_a_connection_then_ping(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d, watched_log():
        server = make_server(Path(d))
        thread = ServerThread(Path(d) / "c.sock", {})
        thread.server = server
        with thread, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(server.path))
            s.sendall(data + b'\n{"id": "last", "method": "ping"}\n')
            s.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := s.recv(65536):
                received += chunk
        answers = [json.loads(line) for line in received.splitlines()]
        for a in answers:
            check(a)
        assert answers and answers[-1] == {"id": "last", "result": answers[-1]["result"]}
        assert answers[-1]["result"]["pong"] is True
