"""Small typed helpers over paho-mqtt that edge, server and simulator share."""

from __future__ import annotations

import socket

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ruche.paho_internals import close_wakeup_sockets


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


def no_delay(_client: mqtt.Client, _userdata: object, sock: object) -> None:
    """paho's `on_socket_open`: turn Nagle's algorithm off on the client's socket.

    paho leaves it on, so a small write that follows another waits for the peer's
    delayed ACK, 40 ms on Linux: a tap's request would take ~46 ms instead of ~3.
    """
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def stop_client(client: mqtt.Client) -> None:
    """Disconnect, stop the network thread, and close paho's internal wake-up sockets.

    paho keeps the socket pair `loop_start` opened until the client is garbage
    collected; a client caught in a reference cycle with its callbacks can have
    those sockets finalised before paho's own `__del__` closes them (a
    ResourceWarning, and a leaked descriptor until then). Closing them here is
    what `__del__` would do.
    """
    client.disconnect()
    client.loop_stop()
    close_wakeup_sockets(client)
