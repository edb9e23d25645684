"""Small typed helpers over paho-mqtt that edge, server and simulator share."""

from __future__ import annotations

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def publish_properties(
    *, response_topic: str | None = None, correlation: bytes | None = None
) -> Properties:
    """MQTT v5 PUBLISH properties for a request (response topic) or its answer (correlation)."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho is untyped here
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if correlation is not None:
        props.CorrelationData = correlation
    return props
