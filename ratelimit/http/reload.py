"""``reload = true``: watching the config file, on the request path, without a thread."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from ratelimit.errors import ConfigError

__all__ = ["ConfigWatch"]


class ConfigWatch:
    """``reload = true``: looks at the config file's mtime at most once a second, on the
    request path (no thread), and calls ``reload`` when it changed. A failed reload is not
    retried until the file changes again (so its error is logged once)."""

    def __init__(
        self,
        path: str,
        reload: Callable[[], bool],
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: reload = true needs the config to be a TOML file")
        self.path = path
        self.interval = interval
        self._reload = reload
        self._clock = clock
        self._next = clock() + interval
        self._mtime = self._stat()
        self._lock = threading.Lock()

    def _stat(self) -> int | None:
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return None

    def check(self) -> None:
        """Reload if the file changed (looked at no more than once per ``interval``)."""
        now = self._clock()
        if now < self._next or not self._lock.acquire(blocking=False):
            return
        try:
            self._next = now + self.interval
            mtime = self._stat()
            if mtime is not None and mtime != self._mtime:
                self._mtime = mtime
                self._reload()
        finally:
            self._lock.release()
