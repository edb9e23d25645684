"""The durable outbox and the go-back-N delivery window."""

from __future__ import annotations

import pytest

from ruche.edge.delivery import DeliveryWindow
from ruche.edge.outbox import Outbox, OutboxFull


def _event(seq: int) -> tuple[str, bytes]:
    return (f"t/{seq}", f'{{"seq":{seq}}}'.encode())


class TestOutbox:
    """Events get consecutive seqs that survive reopening, and leave only when acked."""

    def test_seqs_are_consecutive_and_survive_reopen(self, tmp_path):
        box = Outbox(tmp_path / "o.db")
        assert [box.append(_event) for _ in range(3)] == [1, 2, 3]
        box.close()
        box = Outbox(tmp_path / "o.db")
        assert box.append(_event) == 4
        assert box.depth == 4
        assert [i.seq for i in box.pending(after=0, limit=10)] == [1, 2, 3, 4]
        box.close()

    def test_ack_releases_up_to_seq(self, tmp_path):
        box = Outbox(tmp_path / "o.db")
        for _ in range(5):
            box.append(_event)
        assert box.ack(3) == 3
        assert box.ack(2) == 0, "an older ack changes nothing"
        assert [i.seq for i in box.pending(after=0, limit=10)] == [4, 5]
        assert box.depth == 2
        box.close()
        box = Outbox(tmp_path / "o.db")
        assert box.acked_seq == 3
        assert box.depth == 2
        box.close()

    def test_pending_after_and_limit(self, tmp_path):
        box = Outbox(tmp_path / "o.db")
        for _ in range(10):
            box.append(_event)
        assert [i.seq for i in box.pending(after=4, limit=3)] == [5, 6, 7]
        item = box.pending(after=0, limit=1)[0]
        assert (item.topic, item.payload) == ("t/1", b'{"seq":1}')
        box.close()

    def test_full_outbox_refuses_new_events_without_gaps(self, tmp_path):
        box = Outbox(tmp_path / "o.db", capacity=2)
        box.append(_event)
        box.append(_event)
        with pytest.raises(OutboxFull):
            box.append(_event)
        assert box.refused == 1
        box.ack(1)
        assert box.append(_event) == 3, "no seq was burnt by the refusal"
        box.close()

    def test_failed_build_burns_no_seq(self, tmp_path):
        box = Outbox(tmp_path / "o.db")

        def broken(seq: int) -> tuple[str, bytes]:
            raise ValueError(seq)

        with pytest.raises(ValueError, match="1"):
            box.append(broken)
        assert box.append(_event) == 1
        assert box.depth == 1
        box.close()


class TestDeliveryWindow:
    """Send within the window, advance on acks, go back after a stall."""

    def test_room_shrinks_as_events_are_sent(self):
        window = DeliveryWindow(size=3)
        window.connected(0.0)
        assert window.room() == 3
        window.sent(2)
        assert window.room() == 1
        assert window.ack(2, 1.0)
        assert window.room() == 3

    def test_stall_rewinds_to_the_ack(self):
        window = DeliveryWindow(size=10, resend_after=5.0)
        window.connected(0.0)
        window.sent(6)
        window.ack(2, 1.0)
        assert not window.stalled(5.9)
        assert window.stalled(6.0)
        assert window.sent_upto == 2

    def test_no_stall_when_nothing_outstanding(self):
        window = DeliveryWindow(resend_after=1.0)
        window.connected(0.0)
        assert not window.stalled(100.0)

    def test_reconnect_resends_everything_unacked(self):
        window = DeliveryWindow(acked=4)
        window.connected(0.0)
        window.sent(9)
        window.connected(1.0)
        assert window.sent_upto == 4

    def test_old_ack_is_not_progress(self):
        window = DeliveryWindow()
        window.ack(5, 1.0)
        assert not window.ack(3, 2.0)
        assert window.acked == 5
