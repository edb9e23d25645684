"""Change a running Mosquitto's accounts through its dynamic security plugin.

    with BrokerControl("127.0.0.1", 1883, "ruche-server", secret) as control:
        control.run(add_agent_commands("lyon", "door-a", password))

Mosquitto 2.0 does not re-read the plugin's file on SIGHUP; changes made over its
control topic take effect at once, and the plugin saves them to that file itself.
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ruche.broker.dynsec import CONTROL_TOPIC, RESPONSE_TOPIC
from ruche.mqtt import stop_client


class BrokerControlError(RuntimeError):
    """The broker refused a command, did not answer, or could not be reached."""


class BrokerControl:
    """A connection of the server account to the plugin's control topic."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        ca_file: Path | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._timeout = timeout
        self._where = f"{host}:{port}"
        self._responses: dict[str, dict[str, Any]] = {}
        self._arrived = threading.Condition()
        self._ready = threading.Event()
        self._refused: ReasonCode | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"ruche-control-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(username, password)
        if ca_file is not None:
            self._client.tls_set(ca_certs=str(ca_file), cert_reqs=ssl.CERT_REQUIRED)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._host, self._port = host, port

    def __enter__(self) -> BrokerControl:
        self.connect()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    def connect(self) -> None:
        try:
            self._client.connect(self._host, self._port, keepalive=30)
        except OSError as exc:
            raise BrokerControlError(f"cannot reach the broker at {self._where}: {exc}") from exc
        self._client.loop_start()
        if not self._ready.wait(self._timeout):
            self.close()
            reason = self._refused or "no answer"
            raise BrokerControlError(f"the broker at {self._where} did not let us in: {reason}")

    def close(self) -> None:
        stop_client(self._client)

    def run(
        self, commands: Sequence[dict[str, Any]], *, tolerate: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """Send the commands in one message and return the plugin's answers, in order.

        An answer carrying an error raises BrokerControlError naming the command, unless
        its text is in `tolerate` (say "Client already exists" when re-applying).
        """
        tagged = [{**c, "correlationData": uuid.uuid4().hex} for c in commands]
        payload = json.dumps({"commands": tagged})
        self._client.publish(CONTROL_TOPIC, payload, qos=1)
        wanted = [c["correlationData"] for c in tagged]
        with self._arrived:
            if not self._arrived.wait_for(
                lambda: all(w in self._responses for w in wanted), self._timeout
            ):
                raise BrokerControlError(
                    f"the broker at {self._where} did not answer {len(commands)} account "
                    "commands: is its dynamic security plugin loaded?"
                )
            answers = [self._responses.pop(w) for w in wanted]
        allowed = set(tolerate)
        failed = [a for a in answers if a.get("error") and a["error"] not in allowed]
        if failed:
            detail = "; ".join(f"{a.get('command')}: {a['error']}" for a in failed)
            raise BrokerControlError(f"the broker refused: {detail}")
        return answers

    # --- paho's thread -------------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _u: object,
        _f: mqtt.ConnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._refused = reason
            return
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, _mid: int, reasons: list[ReasonCode], _p: object
    ) -> None:
        if reasons and reasons[0].is_failure:
            self._refused = reasons[0]
            return
        self._ready.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            answers = json.loads(msg.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            return
        with self._arrived:
            for answer in answers:
                if isinstance(answer, dict) and "correlationData" in answer:
                    self._responses[str(answer["correlationData"])] = answer
            self._arrived.notify_all()
