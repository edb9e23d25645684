"""The agent's retained status topic, and its last will when it dies."""

from __future__ import annotations

import queue

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ruche.broker import Status, Topic, decode
from ruche.mqtt import stop_client
from ruche.sim.harness import AGENT, SITE, AgentHarness

pytestmark = pytest.mark.integration


def watch_status(rig: AgentHarness) -> tuple[mqtt.Client, queue.Queue[Status]]:
    statuses: queue.Queue[Status] = queue.Queue()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        payload = decode(msg.topic, msg.payload).payload
        assert isinstance(payload, Status)
        statuses.put(payload)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    server = rig.accounts.server
    client.username_pw_set(server.username, server.password.get_secret_value())
    client.on_message = on_message
    client.connect(rig.broker.host, rig.broker.port)
    client.subscribe(str(Topic.status(SITE, AGENT)), qos=1)
    client.loop_start()
    return client, statuses


class TestStatus:
    """Online (retained) while the agent runs; offline by its last will when it is killed."""

    def test_online_then_last_will(self, tmp_path):
        with AgentHarness(tmp_path, radars=1, seconds=30) as rig:
            rig.start_agent()
            client, statuses = watch_status(rig)
            try:
                online = statuses.get(timeout=15)
                assert online.state == "online"
                assert online.version
                rig.kill_agent()
                offline = statuses.get(timeout=15)
                assert offline.state == "offline"
            finally:
                stop_client(client)
            # A client arriving later still learns the agent is offline (retained).
            late, late_statuses = watch_status(rig)
            try:
                assert late_statuses.get(timeout=10).state == "offline"
            finally:
                stop_client(late)
