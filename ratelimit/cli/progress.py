"""A one-line live progress display on stderr.

On a terminal the line is redrawn in place (``\\r``) a few times a second; when stderr is a
file or a pipe, a plain line is written every couple of seconds instead, so logs stay readable.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Call it with the elapsed seconds; it prints ``render(elapsed)`` when it is time to."""

    def __init__(
        self,
        render: Callable[[float], str],
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        every_plain: float = 2.0,
    ) -> None:
        self._render = render
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = enabled
        self._tty = self._stream.isatty()
        self._every_plain = every_plain
        self._next_plain = 0.0
        self._width = 0
        self._last: float | None = None
        self._last_printed: float | None = None

    def __call__(self, elapsed: float) -> None:
        if not self._enabled:
            return
        self._last = elapsed
        text = self._render(elapsed)
        if self._tty:
            pad = max(0, self._width - len(text))
            self._width = len(text)
            self._stream.write("\r" + text + " " * pad)
        elif elapsed >= self._next_plain:
            self._next_plain = elapsed + self._every_plain
            self._last_printed = elapsed
            self._stream.write(text + "\n")
        self._stream.flush()

    def done(self) -> None:
        """End the live line (on a terminal), or print the final state (elsewhere)."""
        if not self._enabled:
            return
        if self._tty:
            if self._width:
                self._stream.write("\n")
        elif self._last is not None and self._last_printed != self._last:
            self._stream.write(self._render(self._last) + "\n")
        self._stream.flush()
