"""Which of Ruche's languages a person reads: their own setting, else what their browser
asks for (`Accept-Language`), else French."""

from __future__ import annotations

from ruche.server.i18n.catalogues import DEFAULT_LOCALE, LOCALES

_MAX_HEADER = 1000
"""Longer Accept-Language headers are not a browser's: read no further than this."""


def _supported(tag: str) -> str | None:
    """The locale of ours that a language tag names (`fr-CH` -> `fr`), if any."""
    language = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    return language if language in LOCALES else None


def parse_accept_language(header: str) -> list[str]:
    """The language tags of an Accept-Language header, most wanted first (by q, then order).

    Malformed parts are skipped: the header is the browser's, and a page never fails on it.

    >>> parse_accept_language("en-GB,en;q=0.9,fr;q=0.8")
    ['en-GB', 'en', 'fr']
    >>> parse_accept_language("de;q=0.1, fr;q=0, en")
    ['en', 'de']
    """
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header[:_MAX_HEADER].split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*":
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(ranked)]


def choose_locale(*, setting: str | None = None, accept_language: str | None = None) -> str:
    """The locale to show: `setting` (a person's own choice) when Ruche speaks it, else the
    first of `accept_language` that it speaks, else `DEFAULT_LOCALE`.

    >>> choose_locale(setting="en", accept_language="fr")
    'en'
    >>> choose_locale(accept_language="de-DE, en-US;q=0.8")
    'en'
    >>> choose_locale(setting="de", accept_language="es")
    'fr'
    """
    if setting and (chosen := _supported(setting)):
        return chosen
    for tag in parse_accept_language(accept_language or ""):
        if chosen := _supported(tag):
            return chosen
    return DEFAULT_LOCALE
