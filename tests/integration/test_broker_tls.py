"""The TLS listener generated when certificate paths are given."""

from __future__ import annotations

import socket
import ssl
import subprocess

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ruche.broker.accounts import Accounts, AgentAccount, ServerAccount
from ruche.broker.mosquitto_config import BrokerOptions, TlsOptions
from ruche.broker.passwords import generate_password
from ruche.mqtt import stop_client
from ruche.sim.services.mosquitto import MosquittoProcess
from ruche.sim.services.sockets import free_port, wait_for_port

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
