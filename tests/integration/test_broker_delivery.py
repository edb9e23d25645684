"""No loss through the generated config: bursts, restarts and persistent sessions."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from ruche.broker import Presence, PresenceState, Topic, decode, encode
from ruche.broker.accounts import Accounts, AgentAccount, ServerAccount
from ruche.broker.passwords import generate_password
from ruche.sim.services.mosquitto import MosquittoProcess

pytestmark = pytest.mark.integration

BURST = 50_000


def _presence(seq: int) -> bytes:
    state = PresenceState.OCCUPIED if seq % 2 else PresenceState.VACANT
    return encode(Presence(seq=seq, ts=datetime.now(UTC), mono=seq / 10, state=state))


class TestBurst:
    """50,000 QoS 1 messages from one publisher reach one subscriber, none lost."""

    @pytest.mark.slow
    def test_fifty_thousand_qos1_messages_arrive(self, site):
        server = site.connect_server()
        topic = str(Topic.presence(site.site, "agent-a", "desk-1"))
        server.subscribe(topic, qos=1)
        agent = site.connect_agent("agent-a")
        started = time.monotonic()
        infos = [agent.publish(topic, _presence(seq)) for seq in range(1, BURST + 1)]
        for info in infos:
            info.wait_for_publish(60)
        received = server.take(BURST, timeout=120)
        elapsed = time.monotonic() - started
        seqs = [decode(m.topic, m.payload).payload.seq for m in received]  # type: ignore[union-attr]
        assert sorted(seqs) == list(range(1, BURST + 1))
        assert seqs == sorted(seqs), "one publisher, one subscriber: order is kept"
        print(f"\n{BURST} QoS 1 messages in {elapsed:.1f} s: {BURST / elapsed:,.0f} msgs/s")


@pytest.fixture
def private_broker(tmp_path):
    """A broker of this test's own, free to be stopped and restarted."""
    accounts = Accounts(
        server=ServerAccount(password=generate_password()),
        agents=(AgentAccount(site="lab", id="agent-a", password=generate_password()),),
    )
    process = MosquittoProcess.generate(tmp_path / "broker", accounts)
    process.start()
    yield process, accounts
    process.stop()


class TestPersistentSession:
    """QoS 1 messages queued for an offline persistent subscriber survive a broker restart."""

    def test_queued_messages_survive_restart(self, private_broker, probe_factory):
        process, accounts = private_broker
        server_pw = accounts.server.password.get_secret_value()
        agent = accounts.agents[0]
        topic = str(Topic.presence("lab", "agent-a", "desk-1"))

        def subscriber():
            return probe_factory_for(process, accounts.server.username, server_pw,
                                     client_id="ruche-server-1", clean_start=False,
                                     session_expiry=3600)  # fmt: skip

        def probe_factory_for(proc, user, pw, **kw):
            probe = probe_factory(user, pw, **kw)
            probe.host, probe.port = proc.host, proc.port
            return probe

        first = subscriber()
        assert not first.connect().is_failure
        first.subscribe(topic, qos=1)
        first.close()

        publisher = probe_factory_for(process, agent.username, agent.password.get_secret_value())
        assert not publisher.connect().is_failure
        for info in [publisher.publish(topic, _presence(s)) for s in range(1, 501)]:
            info.wait_for_publish(10)
        publisher.close()

        process.stop()  # SIGTERM: Mosquitto writes its snapshot on the way out
        process.start()

        again = subscriber()
        assert not again.connect().is_failure
        received = again.take(500, timeout=30)
        seqs = [decode(m.topic, m.payload).payload.seq for m in received]  # type: ignore[union-attr]
        assert seqs == list(range(1, 501))
