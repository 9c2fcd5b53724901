"""The daemon's control socket: newline-delimited JSON over a Unix stream socket.

Why a Unix socket: access control is the file mode (0600, so root only, like
``/run/mip6/control.sock`` in the user-facing contract) and no port is opened.

Protocol (one JSON object per line, UTF-8, requests answered in order)::

    → {"id": 1, "method": "status", "params": {}}
    ← {"id": 1, "result": {...}}
    ← {"id": 1, "error": {"code": "MethodNotFound", "message": "no method 'stats'"}}

``id`` is echoed (a string, a finite number or null; null when the request
could not be parsed or its id is unusable), ``params`` is an optional object
(null means ``{}``; keys a method does not know are ignored). Error codes,
each answered on the connection, which then keeps serving:

``ParseError``       the line is not UTF-8, not JSON (RFC 8259: no NaN or
                     Infinity, no number that overflows a double, no integer
                     of more than 4300 digits), or nested deeper than the
                     parser can follow (:data:`MAX_DEPTH` is always fine)
``InvalidRequest``   not an object, ``id`` neither a string nor a finite
                     number nor null, ``method`` not a string
``MethodNotFound``   no such method (the message lists the ones there are)
``InvalidParams``    ``params`` not an object, or a parameter of the wrong type
                     or value (the method says which)
``RequestTooLarge``  the line exceeds :data:`MAX_REQUEST` bytes; the
                     connection is then closed (the rest of the line cannot
                     be told from the next request)
``Internal``         a method failed (a bug: logged with its traceback)

and whatever a method raises as :class:`MethodError`. No input of a client
reaches the log as a traceback, and a bad request never stops the server.

Server: :class:`ControlServer` (asyncio); the daemon registers its methods
(``server.register("status", fn)`` where ``fn(params) -> awaitable result``);
``ping`` is built in. Client: :func:`call`, synchronous with a short timeout,
for the CLI; it raises :class:`ControlError` whose ``kind`` says what went wrong.

asyncio is imported only by the server (it costs ~45 ms; the CLI's
``mip6ctl status`` imports this module for :func:`call`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "DEFAULT_TIMEOUT",
    "ERROR_CODES",
    "MAX_DEPTH",
    "MAX_REQUEST",
    "MAX_RESPONSE",
    "AlreadyRunning",
    "ControlError",
    "ControlServer",
    "MethodError",
    "call",
    "decode_request",
    "param",
]


def _log() -> Any:
    """The module logger, made on first use (logging costs the CLI ~10 ms of imports)."""
    import logging

    return logging.getLogger(__name__)


#: Largest request line the server reads; a longer one is refused and the connection closed.
MAX_REQUEST = 64 * 1024
#: Largest response the client accepts (a status document of 100k bindings is ~25 MB).
MAX_RESPONSE = 64 * 1024 * 1024
#: The CLI's default wait for an answer, seconds.
DEFAULT_TIMEOUT = 5.0
#: A connection silent for this long is closed (no task leaks from idle clients).
IDLE_TIMEOUT = 60.0
#: Nesting depth every request may have (deeper ones may still parse: the limit is the
#: interpreter's recursion limit, and a request past it is a ``ParseError``).
MAX_DEPTH = 100
#: The error codes of the protocol itself (methods add their own with MethodError).
ERROR_CODES = frozenset(
    {"ParseError", "InvalidRequest", "MethodNotFound", "InvalidParams", "RequestTooLarge",
     "Internal"}
)  # fmt: skip

Method = Callable[[dict[str, Any]], Awaitable[Any]]


class ControlError(Exception):
    """The control call failed; ``kind`` is machine-readable, the message says what to do.

    kinds: ``NoDaemon``, ``PermissionDenied``, ``Timeout``, ``ProtocolError``
    (the peer did not speak this protocol), ``RemoteError`` (the daemon
    answered with an error; ``code`` holds its code).
    """

    def __init__(self, kind: str, message: str, *, path: str = "", code: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.path = path
        self.code = code


class AlreadyRunning(ControlError):
    """Another daemon answers on the control socket: this one must not start."""


class MethodError(Exception):
    """Raised by a registered method to answer with a specific error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_MISSING: Any = object()


def param(params: dict[str, Any], name: str, kind: type, default: Any = _MISSING) -> Any:
    """``params[name]`` checked to be a ``kind``; :class:`MethodError` ``InvalidParams`` if not.

    Absent or null: ``default`` (absent without a default is an error too).
    ``bool`` is not accepted as an ``int`` (JSON tells them apart).
    """
    value = params.get(name)
    if value is None:
        if default is _MISSING:
            raise MethodError("InvalidParams", f"params.{name} is required")
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise MethodError(
            "InvalidParams",
            f"params.{name} must be {_KIND_NAMES.get(kind, kind.__name__)}, "
            f"not {_json_type(value)}",
        )
    return value


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
               list: "a list", dict: "an object"}  # fmt: skip


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "a list", dict: "an object"}.get(type(value), "null")


def _finite(text: str) -> float:
    """``parse_float`` of the decoder: 1e400 is not a number JSON can carry back."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_no_constant)


def decode_request(line: bytes) -> tuple[Any, str | None]:
    """``(value, None)`` for a line that is UTF-8 JSON, else ``(None, why)``.

    Strict on purpose: UTF-8 only (``json.loads`` on bytes would also take
    UTF-16/32), no NaN/Infinity or overflowing numbers (they could not be
    echoed as JSON), and nesting past the recursion limit is an answer, not
    a RecursionError.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"not UTF-8: byte {e.start} ({line[e.start : e.start + 1]!r})"
    try:
        return _DECODER.decode(text), None
    except RecursionError:
        return None, "nested too deeply"
    except ValueError as e:  # JSONDecodeError, int digits limit, _finite, _no_constant
        return None, f"not JSON: {e}"


# --------------------------------------------------------------------------- client


def _connect(path: str, timeout: float) -> socket.socket:
    """A connected socket, or ControlError NoDaemon / PermissionDenied / Timeout."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as e:
        sock.close()
        raise ControlError(
            "NoDaemon",
            f"no daemon is listening on {path} (is `mip6ctl daemon` running?)",
            path=path,
        ) from e
    except PermissionError as e:
        sock.close()
        raise ControlError(
            "PermissionDenied",
            f"permission denied on {path}: the control socket is mode 0600 "
            "(run as root, e.g. with sudo)",
            path=path,
        ) from e
    except TimeoutError as e:
        sock.close()
        raise ControlError(
            "Timeout", f"connecting to {path} timed out after {timeout:g} s", path=path
        ) from e
    except OSError as e:
        sock.close()
        if e.errno == errno.ECONNREFUSED:
            raise ControlError(
                "NoDaemon",
                f"no daemon is listening on {path} (is `mip6ctl daemon` running?)",
                path=path,
            ) from e
        raise ControlError("NoDaemon", f"cannot connect to {path}: {e.strerror}", path=path) from e
    return sock


def call(
    path: str | os.PathLike[str],
    method: str,
    params: dict[str, Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """Send one request and return its ``result``; raise :class:`ControlError` otherwise.

    ``timeout`` bounds the connect and each wait for data (a daemon that
    accepts but never answers cannot hang the CLI).
    """
    path = os.fspath(path)
    sock = _connect(path, timeout)
    try:
        request = {"id": 1, "method": method, "params": params or {}}
        sock.sendall(json.dumps(request, separators=(",", ":")).encode() + b"\n")
        buf = bytearray()
        chunk = b""
        while b"\n" not in chunk:  # the answer is one line: look only at new data
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ControlError(
                    "ProtocolError",
                    f"the daemon on {path} closed the connection without an answer",
                    path=path,
                )
            buf += chunk
            if len(buf) > MAX_RESPONSE:
                raise ControlError(
                    "ProtocolError",
                    f"the answer on {path} exceeds {MAX_RESPONSE} bytes",
                    path=path,
                )
    except TimeoutError as e:
        raise ControlError(
            "Timeout", f"the daemon on {path} did not answer within {timeout:g} s", path=path
        ) from e
    except (BrokenPipeError, ConnectionResetError) as e:
        raise ControlError(
            "ProtocolError", f"the daemon on {path} dropped the connection", path=path
        ) from e
    finally:
        sock.close()
    line = bytes(buf[: buf.index(b"\n")])
    try:
        answer = json.loads(line)
    except ValueError as e:
        raise ControlError(
            "ProtocolError", f"{path} answered something that is not JSON", path=path
        ) from e
    if not isinstance(answer, dict) or answer.get("id") != 1:
        raise ControlError("ProtocolError", f"{path} answered an unexpected message", path=path)
    if "error" in answer:
        err = answer["error"] if isinstance(answer["error"], dict) else {}
        code = str(err.get("code", "Unknown"))
        raise ControlError(
            "RemoteError",
            f"the daemon refused {method!r}: {err.get('message', '')} ({code})",
            path=path,
            code=code,
        )
    if "result" not in answer:
        raise ControlError("ProtocolError", f"{path} answered without a result", path=path)
    return answer["result"]


def _answers(path: str, timeout: float = 1.0) -> bool:
    """True when something accepts connections on ``path`` (a live daemon)."""
    try:
        _connect(path, timeout).close()
    except ControlError as e:
        # A socket we may not connect to belongs to someone: treat it as alive.
        return e.kind in ("PermissionDenied", "Timeout")
    return True


# --------------------------------------------------------------------------- server


class ControlServer:
    """asyncio server for the control protocol (see the module docstring).

    Start-up rules: the parent directory is created 0755; an existing socket
    file is replaced only when nothing answers on it (a stale file left by a
    crash), and :class:`AlreadyRunning` is raised when a daemon answers; a
    path that exists but is not a socket is never removed. The socket is bound
    under a temporary name, chmod 0600 and only then renamed into place, so
    there is no moment where it is reachable with a wider mode.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_request: int = MAX_REQUEST) -> None:
        self.path = Path(path)
        self.max_request = max_request
        self._methods: dict[str, Method] = {"ping": self._ping}
        self._server: asyncio.AbstractServer | None = None
        self._inode: tuple[int, int] | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self.requests = 0
        """Requests answered (for tests and status)."""

    def register(self, name: str, fn: Method) -> None:
        """Make ``fn(params) -> awaitable`` answer ``method == name`` (replaces an earlier one)."""
        self._methods[name] = fn

    @property
    def methods(self) -> list[str]:
        return sorted(self._methods)

    async def _ping(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "pid": os.getpid()}

    # ----------------------------------------------------------------- lifecycle

    def _prepare_path(self) -> None:
        parent = self.path.parent
        if not parent.is_dir():
            try:
                parent.mkdir(mode=0o755, parents=True)
                os.chmod(parent, 0o755)
            except FileExistsError:
                pass
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(
                "PathInUse",
                f"{self.path} exists and is not a socket; refusing to replace it",
                path=str(self.path),
            )
        if _answers(str(self.path)):
            raise AlreadyRunning(
                "AlreadyRunning",
                f"another daemon is answering on {self.path}; refusing to start a second one",
                path=str(self.path),
            )
        _log().info("removing stale control socket %s", self.path)

    async def start(self) -> None:
        """Bind, chmod 0600, listen and serve (returns once the socket is in place)."""
        import asyncio

        self._prepare_path()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(str(tmp))
            os.chmod(tmp, 0o600)
            sock.listen(64)
            # rename() replaces a stale socket atomically; clients reach the bound inode.
            os.replace(tmp, self.path)
            st = os.lstat(self.path)
            self._inode = (st.st_dev, st.st_ino)
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(
                self._serve, sock=sock, limit=self.max_request
            )
        except BaseException:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    async def close(self) -> None:
        """Stop listening, end open connections, remove the socket file if it is still ours."""
        import asyncio

        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            if self._connections:
                await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        if self._inode is not None:
            try:
                st = os.lstat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    self.path.unlink()
            except FileNotFoundError:
                pass
            self._inode = None

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- requests

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import asyncio

        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
                except TimeoutError:
                    break
                except ValueError:  # the line exceeds the reader's limit
                    await self._write(
                        writer,
                        _error(
                            None,
                            "RequestTooLarge",
                            f"request exceeds {self.max_request} bytes",
                        ),
                    )
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                answer = await self.handle_line(line)
                await self._write(writer, answer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
        try:
            data = json.dumps(answer, separators=(",", ":"), default=str).encode()
        except (TypeError, ValueError, RecursionError) as e:
            _log().exception("control: result of request %r is not JSON", answer.get("id"))
            data = json.dumps(
                _error(answer.get("id"), "Internal", f"result is not JSON: {e}")
            ).encode()
        writer.write(data + b"\n")
        await writer.drain()

    async def handle_line(self, line: bytes) -> dict[str, Any]:
        """Parse and dispatch one request line; always returns a response object."""
        self.requests += 1
        req, why = decode_request(line)
        if why is not None:
            return _error(None, "ParseError", why)
        if not isinstance(req, dict):
            what = _json_type(req)
            return _error(None, "InvalidRequest", f"a request is a JSON object, not {what}")
        rid = req.get("id")
        if isinstance(rid, bool) or not isinstance(rid, (int, str, float, type(None))):
            return _error(None, "InvalidRequest", "id must be a number or a string")
        method = req.get("method")
        if not isinstance(method, str):
            what = _json_type(method)
            return _error(rid, "InvalidRequest", f"method must be a string, not {what}")
        params = req.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            what = _json_type(params)
            return _error(rid, "InvalidParams", f"params must be an object, not {what}")
        fn = self._methods.get(method)
        if fn is None:
            shown = method if len(method) <= 64 else method[:64] + "…"
            return _error(
                rid, "MethodNotFound", f"no method {shown!r} (have: {', '.join(self.methods)})"
            )
        try:
            result = await fn(params)
        except MethodError as e:
            return _error(rid, e.code, e.message)
        except Exception as e:
            _log().exception("control: method %s failed", method)
            return _error(rid, "Internal", f"{type(e).__name__}: {e}")
        return {"id": rid, "result": result}


def _error(rid: Any, code: str, message: str) -> dict[str, Any]:
    return {"id": rid, "error": {"code": code, "message": message}}
