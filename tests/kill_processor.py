"""Run the inbox processor and SIGKILL this process after it applied an event, before commit.

Used by tests/test_processor_kill.py: `python -m tests.kill_processor DATABASE_URL`.
The kill is injected by replacing `inbox.mark_done`, the last step before the commit.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from plugin.store import inbox
from plugin.store.db import make_engine
from webhooks.processor import Processor


def _die(*_: Any) -> None:
    sys.stdout.write("applied, dying before commit\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    inbox.mark_done = _die  # type: ignore[assignment]
    Processor(make_engine(sys.argv[1])).process_one()
    sys.exit("the processor returned instead of being killed")
