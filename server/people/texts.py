"""The e-mails' words in French and English, one dict per locale.

Kept in one place, keyed by locale, until they move to the gettext catalogues of
`ruche.server.i18n`: each entry is then a msgid. `{link}` and `{minutes}` are filled in
by `ruche.server.people.mail.compose`.
"""

from __future__ import annotations

from typing import Final, Literal

Locale = Literal["fr", "en"]
LOCALES: Final[tuple[Locale, ...]] = ("fr", "en")
DEFAULT_LOCALE: Final[Locale] = "fr"

TextKey = Literal[
    "signin_subject", "signin_intro", "signin_action", "reset_subject", "reset_intro",
    "reset_action", "expiry", "ignore", "signature",
]  # fmt: skip

TEXTS: Final[dict[Locale, dict[TextKey, str]]] = {
    "fr": {
        "signin_subject": "Votre lien de connexion à Ruche",
        "signin_intro": "Pour vous connecter à Ruche, ouvrez ce lien :",
        "signin_action": "Me connecter",
        "reset_subject": "Choisir un nouveau mot de passe Ruche",
        "reset_intro": "Pour choisir un nouveau mot de passe Ruche, ouvrez ce lien :",
        "reset_action": "Choisir un mot de passe",
        "expiry": "Ce lien ne sert qu'une fois et expire dans {minutes} minutes.",
        "ignore": "Si vous n'avez rien demandé, ignorez ce message : rien ne change.",
        "signature": "Ruche",
    },
    "en": {
        "signin_subject": "Your Ruche sign-in link",
        "signin_intro": "To sign in to Ruche, open this link:",
        "signin_action": "Sign me in",
        "reset_subject": "Choose a new Ruche password",
        "reset_intro": "To choose a new Ruche password, open this link:",
        "reset_action": "Choose a password",
        "expiry": "This link works once and expires in {minutes} minutes.",
        "ignore": "If you did not ask for it, ignore this message: nothing changes.",
        "signature": "Ruche",
    },
}


def text(locale: str, key: TextKey) -> str:
    """`key` in `locale`; French, the default, for a locale Ruche does not speak."""
    return TEXTS["en" if locale == "en" else DEFAULT_LOCALE][key]
