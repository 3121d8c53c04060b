"""A small, fast HTTP/1.1 client on asyncio streams, for the load generator.

Why not httpx: its connection pool scans every connection for every request, which on this
kind of open-loop traffic (dozens of connections, hundreds of requests a second) costs more
CPU than the requests themselves and turns the generator into the bottleneck. This client
does the one thing the load generator needs: the same request, over a pool of keep-alive
connections to one origin, reading the status, the headers and the body (Content-Length,
chunked, or until close). Plain ``http://`` and ``https://`` (certificates verified).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from ratelimit.errors import ConfigError

__all__ = ["Client", "ProtocolError", "Response"]

_NO_BODY_METHODS = frozenset({"HEAD"})
_MAX_HEADER = 64 * 1024


class ProtocolError(Exception):
    """The server's answer is not valid HTTP/1.1."""


@dataclass(slots=True)
class Response:
    """Status and headers (names lower-cased; repeated headers joined with ``", "``)."""

    status: int
    headers: dict[str, str]


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class Client:
    """Sends ``method`` requests to paths of one origin over reused connections.

    Args:
        url: any URL of the origin (``http://host:port/...`` or ``https://...``).
        method: the request method.
        headers: extra request headers.
        timeout: seconds for one request, connecting included.
    """

    def __init__(
        self,
        url: str,
        method: str = "GET",
        headers: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
        timeout: float = 10.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"expected an http:// or https:// URL with a host, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if parts.scheme == "https" else None
        )
        self.method = method
        self.timeout = timeout
        host_header = parts.netloc.rpartition("@")[2]
        lines = [f"Host: {host_header}", "User-Agent: ratelimit-loadtest", "Accept: */*"]
        names = {name.lower() for name, _ in headers}
        lines = [line for line in lines if line.split(":", 1)[0].lower() not in names]
        lines += [f"{name}: {value}" for name, value in headers]
        if method not in ("GET", "HEAD", "DELETE", "OPTIONS") and "content-length" not in names:
            lines.append("Content-Length: 0")
        self._head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._idle: list[_Connection] = []

    async def _open(self) -> _Connection:
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=self._ssl, limit=_MAX_HEADER
        )
        return _Connection(reader, writer)

    async def request(self, target: str) -> Response:
        """Send one request for ``target`` (path and query) and read the whole response."""
        line = f"{self.method} {target} HTTP/1.1\r\n".encode("latin-1")
        async with asyncio.timeout(self.timeout):
            while self._idle:  # a reused connection may have been closed by the server
                conn = self._idle.pop()
                try:
                    return await self._exchange(conn, line)
                except ConnectionError:
                    pass
                except asyncio.IncompleteReadError as exc:
                    if exc.partial:  # part of an answer came: the request was served
                        raise
            return await self._exchange(await self._open(), line)

    async def _exchange(self, conn: _Connection, line: bytes) -> Response:
        try:
            conn.writer.write(line + self._head)
            response, reusable = await self._read(conn.reader)
        except BaseException:
            conn.close()
            raise
        if reusable:
            self._idle.append(conn)
        else:
            conn.close()
        return response

    async def _read(self, reader: asyncio.StreamReader) -> tuple[Response, bool]:
        while True:
            try:
                block = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise ProtocolError("response headers longer than 64 KiB") from None
            lines = block.decode("latin-1").split("\r\n")
            version, _, rest = lines[0].partition(" ")
            code = rest[:3]
            if not version.startswith("HTTP/1.") or not code.isdigit():
                raise ProtocolError(f"bad status line {lines[0][:80]!r}")
            status = int(code)
            if 100 <= status < 200 and status != 101:
                continue  # an interim response: the real one follows
            break
        headers: dict[str, str] = {}
        for header in lines[1:]:
            if not header:
                continue
            name, sep, value = header.partition(":")
            if not sep:
                raise ProtocolError(f"bad header line {header[:80]!r}")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        reusable = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        if self.method in _NO_BODY_METHODS or status in (204, 304) or status < 200:
            return Response(status, headers), reusable
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line = await reader.readuntil(b"\r\n")
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {size_line[:40]!r}") from None
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                        pass
                    break
                await reader.readexactly(size + 2)
        elif "content-length" in headers:
            length = headers["content-length"].split(",")[0].strip()
            if not length.isdigit():
                raise ProtocolError(f"bad Content-Length {length[:40]!r}")
            await reader.readexactly(int(length))
        else:
            await reader.read()  # the body runs until the server closes
            reusable = False
        return Response(status, headers), reusable

    def close(self) -> None:
        """Close the idle connections."""
        while self._idle:
            self._idle.pop().close()
