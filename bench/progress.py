"""The progress display of ``bench.run``, on stderr.

Contract: :meth:`Progress.step` announces the next of ``total`` steps and
:meth:`Progress.note` updates what the current step is doing; on a TTY both rewrite one line
in place (``[3/14] 0:42 proxy, read-zipf, 32 conns: measuring 2 s``), elsewhere each is one
line of its own. :meth:`Progress.say` prints a line that stays (a finished step's result,
or a warning); :meth:`Progress.close` ends the in-place line. Never writes to stdout.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._started = time.monotonic()
        self._title = ""
        self._open = False

    def _elapsed(self) -> str:
        seconds = int(time.monotonic() - self._started)
        return f"{seconds // 60}:{seconds % 60:02d}"

    def _show(self, text: str) -> None:
        line = f"[{self.done}/{self.total}] {self._elapsed()} {text}"
        if self._tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self._stream.write("\r\x1b[K" + line[:width])
            self._open = True
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def step(self, title: str) -> None:
        self.done = min(self.total, self.done + 1)
        self._title = title
        self._show(title)

    def note(self, text: str) -> None:
        self._show(f"{self._title}: {text}" if self._title else text)

    def say(self, text: str) -> None:
        if self._open:
            self._stream.write("\r\x1b[K")
            self._open = False
        self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._open:
            self._stream.write("\n")
            self._stream.flush()
            self._open = False
