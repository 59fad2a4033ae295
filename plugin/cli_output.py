"""What the commands print: a reader that stops reading (`| head`) ends them quietly."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import TextIO

SIGPIPE_STATUS = 128 + signal.SIGPIPE  # 141, as a shell reports a process SIGPIPE stopped


@contextlib.contextmanager
def quiet_when_the_reader_stops(output: TextIO) -> Iterator[None]:
    """A reader that stops reading (`clvsync export | head -1`) ends the command as it ends
    `cat`: quietly, with the status of a process stopped by SIGPIPE. (Python ignores SIGPIPE,
    so the write raises instead: click made that exit 1, and Python's flush at exit of what was
    still buffered printed an error.)"""
    try:
        yield
    except BrokenPipeError:
        # what is still buffered for the reader goes nowhere, instead of failing again at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, output.fileno())
        os.close(devnull)
        raise SystemExit(SIGPIPE_STATUS) from None
