"""Progress lines for long steps: stage names with elapsed time, on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Prints '[  12.3s] stage: message' lines; silent when quiet."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def say(self, stage: str, message: str) -> None:
        if self.quiet:
            return
        print(f"[{self.elapsed():7.1f}s] {stage}: {message}", file=self.stream, flush=True)
