"""The `ruche` gettext catalogues, read from their `.po` files.

The `.po` files are the only form kept: `read_po` parses one and `write_mo` compiles it in
memory once per process (cached), so there is no compile step to forget and no `.mo` to
drift from its `.po`. English is the source language: msgids are English, `en.po` keeps
empty msgstrs (gettext then answers the msgid) unless a wording is changed, and every msgid
of `fr.po` has its French.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

DOMAIN: Final = "ruche"
LOCALES: Final = ("fr", "en")
"""The languages Ruche speaks, the default first."""
DEFAULT_LOCALE: Final = "fr"
LOCALES_DIR: Final = Path(__file__).parent / "locales"


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "mark, translate later"
    """Marks `message` for extraction (`make messages`); it is translated where it is
    shown, in its reader's language."""
    return message


class UnknownLocaleError(ValueError):
    """A locale Ruche has no catalogue for."""

    def __init__(self, locale: str) -> None:
        super().__init__(f"no catalogue for locale {locale!r}: Ruche speaks {', '.join(LOCALES)}")
        self.locale = locale


def po_path(locale: str) -> Path:
    """Where the catalogue of `locale` is kept."""
    return LOCALES_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


@dataclass(frozen=True, slots=True)
class Translator:
    """The messages of one locale. Jinja2's `install_gettext_translations` takes it as is."""

    locale: str
    translations: Translations

    def gettext(self, message: str) -> str:
        return self.translations.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.translations.ngettext(singular, plural, n)

    def pgettext(self, context: str, message: str) -> str:
        return str(self.translations.pgettext(context, message))

    def npgettext(self, context: str, singular: str, plural: str, n: int) -> str:
        return str(self.translations.npgettext(context, singular, plural, n))


@functools.cache
def translations(locale: str) -> Translator:
    """The translator for `locale` (one of `LOCALES`), read from its `.po` once per process.

    >>> translations("fr").gettext("Sign in")
    'Se connecter'
    >>> translations("en").gettext("Sign in")
    'Sign in'
    """
    if locale not in LOCALES:
        raise UnknownLocaleError(locale)
    return read_translator(po_path(locale), locale)


def read_translator(path: Path, locale: str) -> Translator:
    """The translator of the `.po` file at `path`, compiled in memory."""
    with path.open("rb") as po:
        catalog = read_po(po, locale=locale, domain=DOMAIN)
    compiled = io.BytesIO()
    # Fuzzy entries are guesses pybabel made: English shows rather than a wrong French.
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translator(locale=locale, translations=Translations(compiled, domain=DOMAIN))
