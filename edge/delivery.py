"""Which outbox events to send next: a go-back-N window over the server's contiguous ack.

Pure: the link tells it what happened (connected, sent, acked, time passed) and asks
what to send. The server acks the highest seq up to which it holds every event, so
a lost message stalls the ack; after `resend_after` seconds without progress the
window goes back and resends from the first unacknowledged event. Duplicates are
harmless: the server dedupes on (agent, seq).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DeliveryWindow:
    """At most `size` events in flight beyond the server's ack."""

    size: int = 500
    resend_after: float = 5.0
    acked: int = 0
    sent_upto: int = 0
    last_progress: float = 0.0

    def connected(self, now: float) -> None:
        """A new connection: nothing sent on it yet, so start again after the ack."""
        self.sent_upto = self.acked
        self.last_progress = now

    def ack(self, seq: int, now: float) -> bool:
        """The server holds everything up to `seq`. True if that is progress."""
        if seq <= self.acked:
            return False
        self.acked = seq
        self.sent_upto = max(self.sent_upto, seq)
        self.last_progress = now
        return True

    def room(self) -> int:
        """How many more events may be sent now."""
        return max(0, self.size - (self.sent_upto - self.acked))

    def sent(self, seq: int) -> None:
        self.sent_upto = max(self.sent_upto, seq)

    def stalled(self, now: float) -> bool:
        """True (and rewinds) when sent events have waited `resend_after` s with no ack."""
        if self.sent_upto > self.acked and now - self.last_progress >= self.resend_after:
            self.sent_upto = self.acked
            self.last_progress = now
            return True
        return False
