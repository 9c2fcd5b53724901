"""The control socket: protocol, permissions, stale sockets, bad requests, the sync client."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mip6ctl.daemon.control import (
    ERROR_CODES,
    AlreadyRunning,
    ControlError,
    ControlServer,
    MethodError,
    call,
    param,
)


class ServerThread:
    """A ControlServer on its own event loop in a thread, for the synchronous client."""

    def __init__(self, path: Path, methods: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]]):
        self.server = ControlServer(path)
        for name, fn in methods.items():
            self.server.register(name, fn)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be long.
    p = tmp_path / "run" / "c.sock"
    assert len(str(p)) < 100
    return p


async def echo(params: dict[str, Any]) -> Any:
    return {"echo": params}


async def boom(params: dict[str, Any]) -> Any:
    raise RuntimeError("kaput")


async def refuse(params: dict[str, Any]) -> Any:
    raise MethodError("NotReady", "the engine is starting")


async def big(params: dict[str, Any]) -> Any:
    return {"rows": ["2001:db8:1::100"] * 200_000}  # ~3.6 MB, many recv() calls


async def slow(params: dict[str, Any]) -> Any:
    await asyncio.sleep(params.get("s", 2.0))
    return "late"


@pytest.fixture
def server(sock_path: Path) -> Iterator[ServerThread]:
    methods = {"echo": echo, "boom": boom, "refuse": refuse, "slow": slow, "big": big}
    with ServerThread(sock_path, methods) as s:
        yield s


def raw(path: Path, *lines: bytes, read: int | None = None) -> list[dict[str, Any]]:
    """Send raw lines on one connection; return the parsed answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(b"".join(lines))
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return [json.loads(x) for x in data.splitlines()]


def test_call_round_trip(server: ServerThread, sock_path: Path) -> None:
    assert call(sock_path, "echo", {"a": [1, 2]}) == {"echo": {"a": [1, 2]}}
    pong = call(str(sock_path), "ping")
    assert pong == {"pong": True, "pid": os.getpid()}


def test_socket_and_directory_modes(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "fresh" / "dir" / "c.sock"
        with ServerThread(path, {}):
            st = os.lstat(path)
            assert stat.S_ISSOCK(st.st_mode)
            assert stat.S_IMODE(st.st_mode) == 0o600
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
            assert [p.name for p in path.parent.iterdir()] == ["c.sock"]  # no temp left
        assert not path.exists()  # removed on close
    finally:
        os.umask(old)


def test_errors_are_responses(server: ServerThread, sock_path: Path) -> None:
    answers = raw(
        sock_path,
        b"this is not json\n",
        b"[1, 2]\n",
        b'{"id": 3}\n',
        b'{"id": 4, "method": "nope"}\n',
        b'{"id": 5, "method": "echo", "params": [1]}\n',
        b'{"id": 6, "method": "boom"}\n',
        b'{"id": 7, "method": "refuse"}\n',
        b'{"id": {"x": 1}, "method": "ping"}\n',
        b"\n",
        b'{"id": "last", "method": "echo"}\n',
    )
    codes = [(a["id"], a.get("error", {}).get("code")) for a in answers]
    assert codes == [
        (None, "ParseError"),
        (None, "InvalidRequest"),
        (3, "InvalidRequest"),
        (4, "MethodNotFound"),
        (5, "InvalidParams"),
        (6, "Internal"),
        (7, "NotReady"),
        (None, "InvalidRequest"),
        ("last", None),
    ]
    assert "RuntimeError: kaput" in answers[5]["error"]["message"]
    assert "echo" in answers[3]["error"]["message"]  # lists the methods it has
    assert answers[-1]["result"] == {"echo": {}}
    # ... and the server is still serving new connections.
    assert call(sock_path, "ping")["pong"] is True


def test_request_too_large(server: ServerThread, sock_path: Path) -> None:
    big = b'{"id": 1, "method": "echo", "params": {"x": "' + b"a" * 70_000 + b'"}}\n'
    answers = raw(sock_path, big)
    assert answers[0]["error"]["code"] == "RequestTooLarge"
    assert call(sock_path, "ping")["pong"] is True


def test_remote_error_raises(server: ServerThread, sock_path: Path) -> None:
    with pytest.raises(ControlError) as e:
        call(sock_path, "refuse")
    assert e.value.kind == "RemoteError" and e.value.code == "NotReady"
    assert "starting" in e.value.message


def test_no_daemon(tmp_path: Path) -> None:
    with pytest.raises(ControlError) as e:
        call(tmp_path / "absent.sock", "ping")
    assert e.value.kind == "NoDaemon"
    assert "no daemon is listening on" in str(e.value)


def test_stale_socket_is_no_daemon_then_replaced(sock_path: Path) -> None:
    sock_path.parent.mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock_path))  # a crash leaves the file; nobody listens
    dead.close()
    with pytest.raises(ControlError) as e:
        call(sock_path, "ping")
    assert e.value.kind == "NoDaemon"
    with ServerThread(sock_path, {}):
        assert call(sock_path, "ping")["pong"] is True


def test_refuses_to_start_when_another_answers(server: ServerThread, sock_path: Path) -> None:
    second = ControlServer(sock_path)
    with pytest.raises(AlreadyRunning, match="another daemon"):
        asyncio.run(second.start())
    assert call(sock_path, "ping")["pong"] is True  # the first one is untouched


def test_never_replaces_a_non_socket(sock_path: Path) -> None:
    sock_path.parent.mkdir()
    sock_path.write_text("precious")
    with pytest.raises(ControlError, match="not a socket"):
        asyncio.run(ControlServer(sock_path).start())
    assert sock_path.read_text() == "precious"


def test_close_leaves_a_successors_socket(sock_path: Path) -> None:
    async def main() -> None:
        first = ControlServer(sock_path)
        await first.start()
        os.unlink(sock_path)  # e.g. an operator removed it and a new daemon took over
        successor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        successor.bind(str(sock_path))
        await first.close()
        assert sock_path.exists()
        successor.close()

    asyncio.run(main())


def test_permission_denied(monkeypatch: pytest.MonkeyPatch, server: ServerThread) -> None:
    def denied(self: socket.socket, addr: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(socket.socket, "connect", denied)
    with pytest.raises(ControlError) as e:
        call(server.server.path, "ping")
    assert e.value.kind == "PermissionDenied"
    assert "root" in e.value.message


def test_timeout(server: ServerThread, sock_path: Path) -> None:
    with pytest.raises(ControlError) as e:
        call(sock_path, "slow", {"s": 2.0}, timeout=0.2)
    assert e.value.kind == "Timeout"
    assert call(sock_path, "ping")["pong"] is True


def test_not_a_control_socket(sock_path: Path) -> None:
    """Something answers, but not with our protocol: a clear ProtocolError."""
    sock_path.parent.mkdir()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(sock_path))
    srv.listen(1)

    def answer() -> None:
        conn, _ = srv.accept()
        conn.recv(1000)
        conn.sendall(b"HTTP/1.0 400 Bad Request\n")
        conn.close()

    t = threading.Thread(target=answer)
    t.start()
    with pytest.raises(ControlError) as e:
        call(sock_path, "ping")
    t.join()
    srv.close()
    assert e.value.kind == "ProtocolError"


def test_large_answer(server: ServerThread, sock_path: Path) -> None:
    assert len(call(sock_path, "big")["rows"]) == 200_000


def test_many_requests_on_one_connection(server: ServerThread, sock_path: Path) -> None:
    lines = [json.dumps({"id": i, "method": "echo", "params": {"i": i}}).encode() + b"\n"
             for i in range(200)]  # fmt: skip
    answers = raw(sock_path, *lines)
    assert [a["result"]["echo"]["i"] for a in answers] == list(range(200))


def test_client_does_not_import_asyncio() -> None:
    import subprocess
    import sys

    code = "import sys, mip6ctl.daemon.control; print('asyncio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------ hostile input (issue 21)


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing a client sent reached the log as a traceback (nor as an error at all)."""
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


def codes(answers: list[dict[str, Any]]) -> list[tuple[Any, str | None]]:
    return [(a["id"], a.get("error", {}).get("code")) for a in answers]


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG):
        yield caplog
    no_tracebacks(caplog)


def test_deep_nesting_is_a_parse_error(server: ServerThread, sock_path: Path, quiet) -> None:
    deep_array = b"[" * 30_000 + b"]" * 30_000 + b"\n"
    deep_params = (b'{"id": 2, "method": "echo", "params": ' + b'{"a": ' * 5000 + b"1"
                   + b"}" * 5000 + b"}\n")  # fmt: skip
    answers = raw(sock_path, deep_array, deep_params, b'{"id": 3, "method": "ping"}\n')
    assert codes(answers) == [(None, "ParseError"), (None, "ParseError"), (3, None)]
    assert "nested too deeply" in answers[0]["error"]["message"]
    # nesting the documented depth is fine
    ok = b'{"id": 4, "method": "echo", "params": {"a": ' + b"[" * 90 + b"]" * 90 + b"}}\n"
    (answer,) = raw(sock_path, ok)
    assert answer["id"] == 4 and "result" in answer


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"\xff\xfe{\x00}\x00", (None, "ParseError")),  # UTF-16: json.loads(bytes) would take it
        (b'{"id": 1, "method": "\xc3\x28"}', (None, "ParseError")),  # invalid UTF-8
        (b"\xef\xbb\xbf{}", (None, "ParseError")),  # a UTF-8 byte order mark
        (b'{"id": NaN, "method": "ping"}', (None, "ParseError")),
        (b'{"id": 1, "method": "echo", "params": {"x": Infinity}}', (None, "ParseError")),
        (b'{"id": 1e400, "method": "ping"}', (None, "ParseError")),  # would echo as Infinity
        (b'{"id": ' + b"9" * 5000 + b', "method": "ping"}', (None, "ParseError")),
        (b"null", (None, "InvalidRequest")),
        (b'"ping"', (None, "InvalidRequest")),
        (b"42", (None, "InvalidRequest")),
        (b'[{"id": 1, "method": "ping"}]', (None, "InvalidRequest")),  # no batches
        (b'{"id": [1], "method": "ping"}', (None, "InvalidRequest")),
        (b'{"id": true, "method": "ping"}', (None, "InvalidRequest")),
        (b'{"id": 1}', (1, "InvalidRequest")),
        (b'{"id": 1, "method": null}', (1, "InvalidRequest")),
        (b'{"id": 1, "method": 7}', (1, "InvalidRequest")),
        (b'{"id": 1, "method": ["ping"]}', (1, "InvalidRequest")),
        (b'{"id": 1, "method": "ping", "params": "x"}', (1, "InvalidParams")),
        (b'{"id": 1, "method": "ping", "params": 3}', (1, "InvalidParams")),
        (b'{"id": 1, "method": "ping", "params": [1]}', (1, "InvalidParams")),
        (b'{"id": 1, "method": "ping", "params": true}', (1, "InvalidParams")),
        (b'{"id": 1, "method": "ping", "params": null}', (1, None)),  # null: no params
        (b'{"id": "x", "method": "Ping"}', ("x", "MethodNotFound")),
        (b'{"id": 1.5, "method": ""}', (1.5, "MethodNotFound")),
    ],
)
def test_hostile_lines_get_their_documented_code(line: bytes, expected: tuple, quiet) -> None:
    """Sans-I/O: one line in, one answer out, whatever the line is."""
    server = ControlServer("/nonexistent/c.sock")
    answer = asyncio.run(server.handle_line(line))
    assert (answer["id"], answer.get("error", {}).get("code")) == expected
    json.dumps(answer, allow_nan=False)  # the answer itself is strict JSON


def test_unknown_method_message_is_bounded(quiet) -> None:
    server = ControlServer("/nonexistent/c.sock")
    line = json.dumps({"id": 1, "method": "x" * 60_000}).encode()
    answer = asyncio.run(server.handle_line(line))
    assert answer["error"]["code"] == "MethodNotFound"
    assert len(answer["error"]["message"]) < 200 and "have: ping" in answer["error"]["message"]


def test_one_connection_survives_every_error_class(server: ServerThread, sock_path: Path,
                                                   quiet) -> None:  # fmt: skip
    answers = raw(
        sock_path,
        b"[" * 20_000 + b"\n",
        b"\xff\xfe\xfd\n",
        b'{"id": NaN}\n',
        b"[]\n",
        b'{"id": 1, "method": {}}\n',
        b'{"id": 2, "method": "echo", "params": "nope"}\n',
        b'{"id": 3, "method": "nope"}\n',
        b'{"id": 4, "method": "ping"}\n',
    )
    assert codes(answers) == [
        (None, "ParseError"), (None, "ParseError"), (None, "ParseError"),
        (None, "InvalidRequest"), (1, "InvalidRequest"), (2, "InvalidParams"),
        (3, "MethodNotFound"), (4, None),
    ]  # fmt: skip
    assert answers[-1]["result"]["pong"] is True


def test_request_too_large_closes_only_that_connection(server: ServerThread, sock_path: Path,
                                                       quiet) -> None:  # fmt: skip
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.settimeout(5)
        other.connect(str(sock_path))
        answers = raw(sock_path, b"x" * 100_000 + b"\n", b'{"id": 2, "method": "ping"}\n')
        assert codes(answers) == [(None, "RequestTooLarge")]  # then closed: nothing after it
        other.sendall(b'{"id": 9, "method": "ping"}\n')  # a connection opened before it
        assert json.loads(other.recv(65536))["id"] == 9
    assert call(sock_path, "ping")["pong"] is True


def test_client_vanishing_mid_answer_is_not_an_error(server: ServerThread, sock_path: Path,
                                                     quiet) -> None:  # fmt: skip
    for _ in range(5):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(sock_path))
            s.sendall(b'{"id": 1, "method": "big"}\n')  # MBs of answer nobody reads
    assert call(sock_path, "ping")["pong"] is True


# ------------------------------------------------------- the daemon's methods' parameters


class FakeDaemon:
    """What rpc.plan / rpc.apply read before they touch the kernel."""

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir

    async def reload(self) -> dict[str, Any]:  # pragma: no cover - never reached here
        raise AssertionError("an invalid request must not reload")


def rpc_server(tmp_path: Path) -> ControlServer:
    from mip6ctl.daemon.rpc import rpc_apply, rpc_plan

    daemon = FakeDaemon(tmp_path / "empty-config")
    daemon.config_dir.mkdir(exist_ok=True)
    server = ControlServer(tmp_path / "c.sock")
    server.register("plan", lambda params: rpc_plan(daemon, params))
    server.register("apply", lambda params: rpc_apply(daemon, params))
    return server


@pytest.mark.parametrize("method", ["plan", "apply"])
@pytest.mark.parametrize(
    "config_dir", [7, 1.5, True, ["/etc/mip6"], {"path": "/etc/mip6"}, "/etc/\x00mip6", "/" * 5000]
)
def test_plan_and_apply_reject_bad_config_dir(tmp_path: Path, method: str, config_dir: Any,
                                              quiet) -> None:  # fmt: skip
    server = rpc_server(tmp_path)
    line = json.dumps({"id": 1, "method": method, "params": {"config_dir": config_dir}})
    answer = asyncio.run(server.handle_line(line.encode()))
    assert answer["error"]["code"] == "InvalidParams", answer
    assert "config_dir" in answer["error"]["message"]


def test_plan_with_good_params_still_answers(tmp_path: Path, quiet) -> None:
    server = rpc_server(tmp_path)
    for params in ({}, {"config_dir": None}, {"config_dir": ""}):
        line = json.dumps({"id": 1, "method": "plan", "params": params}).encode()
        answer = asyncio.run(server.handle_line(line))
        assert answer["result"]["ok"] is False  # the empty directory is not a configuration
    # another directory is planned (a staged copy), not refused: here it does not exist
    line = json.dumps({"id": 2, "method": "plan", "params": {"config_dir": "/elsewhere"}})
    answer = asyncio.run(server.handle_line(line.encode()))
    assert answer["result"]["ok"] is False, answer
    assert "does not exist" in answer["result"]["errors"][0]["message"], answer
    # applying another directory stays refused
    line = json.dumps({"id": 3, "method": "apply", "params": {"config_dir": "/elsewhere"}})
    answer = asyncio.run(server.handle_line(line.encode()))
    assert answer["error"]["code"] == "WrongConfigDir"


def test_param_helper() -> None:
    assert param({"n": 3}, "n", int) == 3
    assert param({}, "n", int, 5) == 5 and param({"n": None}, "n", int, 5) == 5
    for bad in ({"n": True}, {"n": "3"}, {"n": [3]}, {}):
        with pytest.raises(MethodError) as e:
            param(bad, "n", int)
        assert e.value.code == "InvalidParams"
    assert {"ParseError", "InvalidRequest", "InvalidParams", "RequestTooLarge"} <= ERROR_CODES
