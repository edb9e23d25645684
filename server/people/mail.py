"""The e-mails people receive (a sign-in link, a password reset), and the SMTP adapter
that sends them with the standard library's smtplib.

```python
mailer = SmtpMailer(settings.mail)
mailer.send(compose("signin", locale="en", to="ada@example.org", link=url, minutes=15))
```
"""

from __future__ import annotations

import html
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Literal, Protocol

from ruche.server.errors import DomainError
from ruche.server.people.texts import text
from ruche.server.settings import ServerMail

Kind = Literal["signin", "reset"]


class MailError(DomainError):
    """The SMTP server could not be reached or refused the message; says which."""


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str


class Mailer(Protocol):
    def send(self, mail: Mail) -> None: ...


def compose(kind: Kind, *, locale: str, to: str, link: str, minutes: int) -> Mail:
    """The e-mail of `kind` in `locale`, plain text and HTML, carrying `link`."""
    intro, action = text(locale, f"{kind}_intro"), text(locale, f"{kind}_action")  # type: ignore[arg-type]
    expiry = text(locale, "expiry") % {"minutes": minutes}
    ignore, signature = text(locale, "ignore"), text(locale, "signature")
    plain = f"{intro}\n\n{link}\n\n{expiry}\n{ignore}\n\n-- \n{signature}\n"
    e = html.escape
    rich = (
        f'<!doctype html><html lang="{e(locale)}"><body>'
        f"<p>{e(intro)}</p>"
        f'<p><a href="{e(link)}">{e(action)}</a></p>'
        f"<p>{e(expiry)}<br>{e(ignore)}</p>"
        f"<p>{e(signature)}</p></body></html>"
    )
    return Mail(to=to, subject=text(locale, f"{kind}_subject"), text=plain, html=rich)  # type: ignore[arg-type]


class SmtpMailer:
    """Sends each mail over a new SMTP connection, as `settings` says (none, STARTTLS or
    TLS from the start; a login when a username is set)."""

    def __init__(self, settings: ServerMail) -> None:
        self._settings = settings

    def send(self, mail: Mail) -> None:
        s = self._settings
        message = EmailMessage()
        message["From"] = s.from_address
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Message-ID"] = make_msgid(domain=s.from_address.rpartition("@")[2].strip("> "))
        message.set_content(mail.text)
        message.add_alternative(mail.html, subtype="html")
        where = f"SMTP server {s.host}:{s.port}"
        try:
            if s.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout_s, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
            with smtp:
                if s.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if s.username is not None and s.password is not None:
                    smtp.login(s.username, s.password.get_secret_value())
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise MailError(f"{where} refused the login of {s.username!r}: check [mail] "
                            f"username and password ({exc.smtp_code})") from exc  # fmt: skip
        except smtplib.SMTPException as exc:
            raise MailError(f"{where} refused the mail to {mail.to}: {exc}") from exc
        except ssl.SSLError as exc:
            raise MailError(f"{where}: TLS failed ({exc.reason}); check [mail] security") from exc
        except OSError as exc:
            raise MailError(f"{where} cannot be reached: {exc.strerror or exc}") from exc
