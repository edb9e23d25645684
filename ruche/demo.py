"""`ruche demo`: Ruche running on one machine, as far as it is built.

Today: a Mosquitto broker on Ruche's generated configuration, a demo agent
account announcing itself on its retained status topic, and the commands to
watch the traffic. It stops cleanly on Ctrl-C, SIGTERM or after `--duration`.
"""

from __future__ import annotations

import shlex
import signal
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ruche import __version__
from ruche.broker import Status, Topic, encode, everything
from ruche.broker.accounts import Accounts, AgentAccount, ServerAccount
from ruche.broker.mosquitto import MosquittoError, MosquittoProcess
from ruche.broker.mosquitto_config import BrokerOptions
from ruche.broker.passwords import generate_password
from ruche.ports import free_port

DEMO_SITE = "demo"
DEMO_AGENT = "door-1"


def _say(text: str) -> None:
    print(text, flush=True)  # noqa: T201 - the demo talks to the person running it


def run_demo(*, duration: float | None, directory: Path | None, port: int | None) -> int:
    """Run until Ctrl-C, SIGTERM or `duration` seconds; return the exit status."""
    with tempfile.TemporaryDirectory(prefix="ruche-demo-") as tmp:
        workdir = (directory or Path(tmp)).resolve()
        accounts = Accounts(
            server=ServerAccount(password=generate_password()),
            agents=(AgentAccount(site=DEMO_SITE, id=DEMO_AGENT, password=generate_password()),),
        )
        try:
            broker = MosquittoProcess.generate(
                workdir / "broker", accounts, BrokerOptions(port=port or free_port())
            )
            broker.start()
        except MosquittoError as exc:
            print(f"ruche demo: {exc}", file=sys.stderr)  # noqa: T201
            return 1
        try:
            return _serve(broker, accounts, duration)
        finally:
            broker.stop()
            _say("broker stopped; bye")


def _serve(broker: MosquittoProcess, accounts: Accounts, duration: float | None) -> int:
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    server = accounts.server
    agent = accounts.agents[0]
    seen = 0

    def _on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal seen
        seen += 1

    watcher = _connect(broker, server.username, server.password.get_secret_value())
    watcher.on_message = _on_message
    watcher.subscribe(everything(), qos=1)
    agent_client = _connect(broker, agent.username, agent.password.get_secret_value())
    status_topic = str(Topic.status(agent.site, agent.id))
    started = time.monotonic()
    agent_client.publish(status_topic, _status(0.0), qos=1, retain=True)

    sub = shlex.join(
        [
            "mosquitto_sub", "-V", "mqttv5", "-h", broker.host, "-p", str(broker.port),
            "-u", server.username, "-P", server.password.get_secret_value(),
            "-t", everything(), "-v",
        ]
    )  # fmt: skip
    _say(f"ruche {__version__} demo")
    _say(f"broker: Mosquitto on {broker.host}:{broker.port}, config in {broker.files.directory}")
    _say(f"accounts: server {server.username!r}, agent {agent.username!r}")
    _say(f"watch the traffic:\n  {sub}")
    _say("stop with Ctrl-C" + (f" (or wait {duration:g} s)" if duration else ""))
    try:
        deadline = None if duration is None else started + duration
        while not stop.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            stop.wait(min(10.0, remaining) if remaining is not None else 10.0)
            uptime = time.monotonic() - started
            agent_client.publish(status_topic, _status(uptime), qos=1, retain=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        goodbye = agent_client.publish(status_topic, _status(0.0, online=False), qos=1, retain=True)
        goodbye.wait_for_publish(2)
        for client in (agent_client, watcher):
            client.disconnect()
            client.loop_stop()
    _say(f"summary: {seen} messages seen on {everything()} in {time.monotonic() - started:.1f} s")
    return 0


def _status(uptime: float, *, online: bool = True) -> bytes:
    return encode(
        Status(
            state="online" if online else "offline",
            ts=datetime.now(UTC),
            version=__version__,
            uptime_s=uptime,
        )
    )


def _connect(broker: MosquittoProcess, username: str, password: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client
