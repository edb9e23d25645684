"""The TLS listener generated when certificate paths are given."""

from __future__ import annotations

import logging
import socket
import ssl
import subprocess
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ruche.broker.accounts import Accounts, AgentAccount, ServerAccount
from ruche.broker.mosquitto_config import BrokerOptions, TlsOptions
from ruche.broker.passwords import generate_password
from ruche.edge.link import AgentLink, LinkOptions
from ruche.edge.outbox import Outbox
from ruche.mqtt import stop_client
from ruche.server.deploy.tls import make_ca
from ruche.sim.services.mosquitto import MosquittoProcess
from ruche.sim.services.sockets import free_port, wait_for_port
from ruche.sim.testing.waits import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def certificate(tmp_path):
    cert, key = tmp_path / "broker.crt", tmp_path / "broker.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class TestTlsListener:
    """Agents can reach the broker over TLS with their password; the certificate is checked."""

    def test_agent_connects_over_tls(self, tmp_path, certificate):
        cert, key = certificate
        agent = AgentAccount(site="lab", id="agent-a", password=generate_password())
        accounts = Accounts(server=ServerAccount(password=generate_password()), agents=(agent,))
        tls_port = free_port()
        options = BrokerOptions(
            port=free_port(),
            tls=TlsOptions(certfile=cert, keyfile=key, port=tls_port, bind="127.0.0.1"),
        )
        with MosquittoProcess.generate(tmp_path / "broker", accounts, options) as broker:
            assert wait_for_port("127.0.0.1", tls_port, timeout=5), broker.log_tail()
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=agent.client_id, protocol=mqtt.MQTTv5
            )
            client.tls_set(ca_certs=str(cert), cert_reqs=ssl.CERT_REQUIRED)
            client.username_pw_set(agent.username, agent.password.get_secret_value())
            client.connect("localhost", tls_port)
            client.loop_start()
            try:
                info = client.publish("ruche/v1/lab/agent-a/status", b"{}", qos=1)
                info.wait_for_publish(5)
                assert info.is_published()
            finally:
                stop_client(client)

            untrusting = ssl.create_default_context()  # system CAs: ours is unknown
            with (
                socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw,
                pytest.raises(ssl.SSLCertVerificationError),
            ):
                untrusting.wrap_socket(raw, server_hostname="localhost")


class TestAgentSaysWhyItCannotConnect:
    """An agent whose CA does not vouch for the broker logs why, once, however often it
    retries; a port nobody listens on likewise."""

    # paho leaves a socket whose TLS handshake failed to the garbage collector, which
    # closes it (with a ResourceWarning): nothing leaks, but pytest reports it.
    @pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
    def test_wrong_ca(self, tmp_path, certificate, caplog):
        cert, key = certificate
        other = tmp_path / "other"
        other.mkdir()
        make_ca(other / "ca.pem", other / "ca.key", site="elsewhere")
        accounts = Accounts(server=ServerAccount(password=generate_password()), agents=())
        tls_port = free_port()
        options = BrokerOptions(
            port=free_port(),
            tls=TlsOptions(certfile=cert, keyfile=key, port=tls_port, bind="127.0.0.1"),
        )
        with MosquittoProcess.generate(tmp_path / "broker", accounts, options) as broker:
            assert wait_for_port("127.0.0.1", tls_port, timeout=5), broker.log_tail()
            link = _link(tmp_path / "a.db", tls_port, ca_file=other / "ca.pem")
            caplog.set_level(logging.INFO, logger="ruche.edge.link")
            link.start()
            try:
                wait_until(lambda: link.stats.connect_failures >= 3, timeout=20,
                           what="three attempts")  # fmt: skip
            finally:
                link.stop()
        said = [r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage()]
        assert len(said) == 1, said
        assert "CERTIFICATE_VERIFY_FAILED" in said[0]

    def test_refused_port(self, tmp_path, caplog):
        link = _link(tmp_path / "a.db", free_port(), ca_file=None)
        caplog.set_level(logging.INFO, logger="ruche.edge.link")
        link.start()
        try:
            wait_until(lambda: link.stats.connect_failures >= 2, timeout=20, what="two attempts")
        finally:
            link.stop()
        said = [r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage()]
        assert len(said) == 1, said
        assert "Connection refused" in said[0]


def _link(db: Path, port: int, *, ca_file: Path | None) -> AgentLink:
    options = LinkOptions(site="lab", agent="agent-a", host="localhost", port=port,
                          username="lab/agent-a", password=generate_password(), ca_file=ca_file,
                          reconnect_min=0.5, reconnect_max=1.0)  # fmt: skip
    return AgentLink(options, Outbox(db), on_command=lambda c: None,
                     on_allowlist=lambda a: None)  # fmt: skip
