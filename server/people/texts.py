"""The e-mails' words: English msgids of the `ruche` catalogues, translated when a mail
is composed (`ruche.server.i18n`), so a mail reads like the pages of its reader's
language. `%(minutes)s` is filled in by `ruche.server.people.mail.compose`.
"""

from __future__ import annotations

from typing import Final, Literal

from ruche.server.i18n import DEFAULT_LOCALE, LOCALES, N_, translations

TextKey = Literal[
    "signin_subject", "signin_intro", "signin_action", "reset_subject", "reset_intro",
    "reset_action", "expiry", "ignore", "signature",
]  # fmt: skip

MESSAGES: Final[dict[TextKey, str]] = {
    "signin_subject": N_("Your Ruche sign-in link"),
    "signin_intro": N_("To sign in to Ruche, open this link:"),
    "signin_action": N_("Sign me in"),
    "reset_subject": N_("Choose a new Ruche password"),
    "reset_intro": N_("To choose a new Ruche password, open this link:"),
    "reset_action": N_("Choose a password"),
    "expiry": N_("This link works once and expires in %(minutes)s minutes."),
    "ignore": N_("If you did not ask for it, ignore this message: nothing changes."),
    "signature": N_("The Ruche team"),
}


def text(locale: str, key: TextKey) -> str:
    """`key` in `locale`; French, the default, for a locale Ruche does not speak."""
    return translations(locale if locale in LOCALES else DEFAULT_LOCALE).gettext(MESSAGES[key])


__all__ = ["DEFAULT_LOCALE", "LOCALES", "MESSAGES", "TextKey", "text"]
