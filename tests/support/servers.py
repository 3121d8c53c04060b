"""Real HTTP servers for tests and benchmarks: uvicorn for ASGI, waitress or wsgiref for WSGI.

Each helper serves an application on a free port of 127.0.0.1, waits until it accepts
connections, yields the base URL and stops the server on exit (nothing is left running)::

    from tests.support.servers import uvicorn_server, wsgi_server

    with uvicorn_server(app) as url:          # "http://127.0.0.1:<port>", uvicorn in a thread
        httpx.get(url + "/")

    with wsgi_server(wsgi_app) as url:        # waitress (default) or kind="wsgiref", in a thread
        httpx.get(url + "/")

    with server_process(["uvicorn", "examples.starlette_app:app"]) as url:   # a subprocess
        ...                                   # {port} in the command is replaced by the port

In-thread servers share the test's process (so a test can inject a ``MemoryBackend`` with a
fake clock); :func:`server_process` runs a command exactly as a user would.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

__all__ = [
    "clear_of_a_minute_edge",
    "free_port",
    "server_process",
    "stop_process",
    "uvicorn_server",
    "wait_for_port",
    "wsgi_server",
]

HOST = "127.0.0.1"


def clear_of_a_minute_edge(needed: float = 5.0) -> None:
    """Wait, if need be, until ``needed`` seconds fit before the next minute of the clock.

    For tests that send a burst to a real server (a subprocess on the real clock) and expect
    exact counts from a fixed window of a minute: such a window is aligned to the clock's
    minutes, and a burst that straddles the turn of a minute is rightly admitted twice.
    """
    left = 60.0 - time.time() % 60.0
    if left < needed:
        time.sleep(left + 0.01)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Ask ``proc`` to stop (SIGTERM), kill it if it has not after ``timeout`` s, reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for_port(
    port: int, timeout: float = 15.0, proc: subprocess.Popen[Any] | None = None
) -> None:
    """Block until 127.0.0.1:``port`` accepts connections (``RuntimeError`` after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout} s")


@contextlib.contextmanager
def uvicorn_server(app: Any, **options: Any) -> Iterator[str]:
    """Serve an ASGI ``app`` with uvicorn in a background thread; yields the base URL.

    ``options`` go to ``uvicorn.Config`` (for example ``ws="websockets"``).
    """
    import uvicorn

    port = free_port()
    options.setdefault("log_level", "warning")
    options.setdefault("lifespan", "auto")
    config = uvicorn.Config(app, host=HOST, port=port, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn:{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingWSGIServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


def _stop_waitress(server: Any, thread: threading.Thread) -> None:
    """Stop a waitress server from its own loop thread: everything in its socket map (the
    listener, open connections, the trigger) is closed there, so the loop ends by itself.
    (Closing the listener from another thread races the loop's ``select`` on that very
    descriptor: "Bad file descriptor" in the server thread, a socket left unclosed.)"""

    def close_everything() -> None:
        for dispatcher in list(server._map.values()):
            dispatcher.close()

    server.trigger.pull_trigger(close_everything)
    thread.join(10)
    server.task_dispatcher.shutdown()


@contextlib.contextmanager
def wsgi_server(
    app: Callable[..., Any], kind: str = "waitress", threads: int = 4, **options: Any
) -> Iterator[str]:
    """Serve a WSGI ``app`` in a background thread with ``waitress`` or ``wsgiref``.

    ``options`` go to waitress (note: waitress drops ``X-Forwarded-*`` headers unless told
    ``clear_untrusted_proxy_headers=False`` or given its own ``trusted_proxy``).
    """
    port = free_port()
    if kind == "waitress":
        from waitress.server import create_server

        server: Any = create_server(app, host=HOST, port=port, threads=threads, **options)
        thread = threading.Thread(target=server.run, name=f"waitress:{port}", daemon=True)
        thread.start()
        try:
            wait_for_port(port)
            yield f"http://{HOST}:{port}"
        finally:
            _stop_waitress(server, thread)
        return
    if kind != "wsgiref":
        raise ValueError(f"unknown WSGI server {kind!r} (waitress or wsgiref)")
    httpd = make_server(HOST, port, app, _ThreadingWSGIServer, _QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, name=f"wsgiref:{port}", daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@contextlib.contextmanager
def server_process(
    command: Sequence[str],
    *,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> Iterator[str]:
    """Run a server command (``{port}`` replaced by a free port) until the block ends.

    ``python`` as the first word means this interpreter. Output goes to the test's stderr
    only if the server fails to start.
    """
    port = free_port()
    argv = [part.replace("{port}", str(port)) for part in command]
    if argv[0] == "python":
        argv[0] = sys.executable
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        try:
            wait_for_port(port, timeout, proc)
        except RuntimeError:
            proc.kill()
            output = proc.communicate()[0].decode(errors="replace")
            raise RuntimeError(f"{' '.join(argv)} failed to start:\n{output}") from None
        yield f"http://{HOST}:{port}"
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()
