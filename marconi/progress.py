"""Progress of long admin work (`--wait`): a bar redrawn in place on a terminal, plain lines
elsewhere (a log file, a CI job), each printed when the stage changes or, at most every
`every` seconds, when the text does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

WIDTH = 24
CLEAR_LINE = "\r\x1b[2K"


def bar(fraction: float | None) -> str:
    """`[#########---------------]`, or a bar of dots when the fraction is unknown."""
    if fraction is None:
        return "[" + "." * WIDTH + "]"
    filled = round(WIDTH * min(1.0, max(0.0, fraction)))
    return "[" + "#" * filled + "-" * (WIDTH - filled) + "]"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    def __init__(
        self,
        stream: TextIO | None,
        *,
        tty: bool | None = None,
        every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`stream=None` shows nothing; `tty` defaults to whether the stream is a terminal."""
        self.stream = stream
        self.tty = (stream is not None and stream.isatty()) if tty is None else tty
        self.every = every
        self.clock = clock
        self._drawn = False
        self._stage: str | None = None
        self._text: str | None = None
        self._at = 0.0

    def update(self, fraction: float | None, text: str, stage: str | None = None) -> None:
        if self.stream is None:
            return
        if self.tty:
            self.stream.write(f"{CLEAR_LINE}{bar(fraction)} {text}")
            self.stream.flush()
            self._drawn = True
            return
        stage = text if stage is None else stage
        now = self.clock()
        if stage != self._stage or (text != self._text and now - self._at >= self.every):
            self.stream.write(text + "\n")
            self.stream.flush()
            self._stage, self._text, self._at = stage, text, now

    def note(self, text: str) -> None:
        """A line of its own (the bar is redrawn below it at the next update)."""
        if self.stream is None:
            return
        self.stream.write((CLEAR_LINE if self._drawn else "") + text + "\n")
        self.stream.flush()
        self._drawn = False

    def close(self) -> None:
        """End the bar's line, so what follows starts on a fresh one."""
        if self.stream is not None and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
        self._drawn = False
