"""The ingest gate: busy while a webhook is stored, quiet once none has come for a while."""

from __future__ import annotations

import time

from webhooks.gate import IngestGate


def test_gate_is_quiet_only_after_the_last_webhook_has_been_stored_for_a_while() -> None:
    gate = IngestGate(serialise_writes=True)
    # a gate that has stored nothing is quiet
    assert gate.quiet_for(1.0) and not gate.busy
    # while a webhook is stored it is busy, not quiet
    with gate.storing():
        assert gate.busy and not gate.quiet_for(0.0)
    # just after, it is not quiet for a second, but it is for a moment
    assert not gate.busy and not gate.quiet_for(1.0)
    time.sleep(0.05)
    assert gate.quiet_for(0.04)
