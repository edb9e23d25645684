"""A real SMTP server for tests (aiosmtpd) and the messages it accepted: what Ruche's
mailer sends (sign-in links, password resets, invitations) is read back as sent."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from ruche.sim.services.sockets import free_port
from ruche.sim.testing.waits import wait_until


class Inbox:
    """aiosmtpd's handler: every message the SMTP server accepted, parsed."""

    def __init__(self, base_url: str = "http://testserver") -> None:
        self.messages: list[EmailMessage] = []
        self._link = re.compile(re.escape(base_url) + r"(/\S+)")

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802, ANN401 - aiosmtpd's name and types
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)  # noqa: S101 - the default policy's class
        self.messages.append(parsed)
        return "250 OK"

    def to(self, address: str, *, timeout: float = 5) -> EmailMessage:
        """The last message to `address`, once one has arrived."""
        wait_until(lambda: any(m["To"] == address for m in self.messages), timeout=timeout)
        return [m for m in self.messages if m["To"] == address][-1]

    def link_to(self, address: str) -> str:
        """The path of the link in the last message to `address`, once it has arrived."""
        body = self.to(address).get_body(preferencelist=("plain",))
        assert body is not None  # noqa: S101 - Ruche's mails all have a plain part
        found = self._link.search(body.get_content())
        assert found, body.get_content()  # noqa: S101 - a test helper's check
        return found.group(1)


@contextmanager
def smtp_server(base_url: str = "http://testserver") -> Iterator[tuple[Inbox, int]]:
    """An SMTP server on a free port of 127.0.0.1: its inbox and port."""
    inbox, port = Inbox(base_url), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
