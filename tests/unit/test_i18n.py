"""French and English: the catalogues are whole, the locale is chosen in order, and values
are written by Babel for the reader."""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

from ruche.server.i18n import (
    LOCALES,
    Formats,
    UnknownLocaleError,
    choose_locale,
    parse_accept_language,
    po_path,
    read_translator,
    translations,
)

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
SERVER = ROOT / "server"


def catalogue(locale: str) -> Catalog:
    with po_path(locale).open("rb") as po:
        return read_po(po, locale=locale)


def extracted() -> set[str | tuple[str, str]]:
    """Every msgid (with its context, if any) that `make messages` would extract, read
    through the same mapping file."""
    with (SERVER / "i18n" / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: set[str | tuple[str, str]] = set()
    for _file, _line, message, _comments, context in extract_from_dir(
        SERVER, method_map, options_map
    ):
        msgid = message[0] if isinstance(message, tuple | list) else message
        found.add((context, msgid) if context else msgid)
    return found


def ids(catalog: Catalog) -> set[str | tuple[str, str]]:
    return {
        (m.context, m.id[0] if isinstance(m.id, tuple) else m.id)
        if m.context
        else (m.id[0] if isinstance(m.id, tuple) else m.id)
        for m in catalog
        if m.id
    }


class TestCatalogues:
    """Each string the code and the templates mark is in both catalogues, translated in French."""

    def test_every_marked_string_is_in_each_catalogue(self):
        marked = extracted()
        assert "Sign in" in marked, "extraction found none of the sign-in page's strings"
        for locale in LOCALES:
            missing = marked - ids(catalogue(locale))
            assert not missing, f"run `make messages`, then translate: {sorted(map(str, missing))}"

    def test_every_french_message_is_translated(self):
        untranslated = [
            m.id
            for m in catalogue("fr")
            if m.id
            and (m.fuzzy or not all(m.string if isinstance(m.string, tuple) else [m.string]))
        ]
        assert not untranslated, f"translate in fr/LC_MESSAGES/ruche.po: {untranslated}"

    def test_catalogues_pass_babels_checks(self):
        # Placeholders (%(name)s) kept, plural forms complete.
        for locale in LOCALES:
            problems = [(m.id, [str(e) for e in errors]) for m, errors in catalogue(locale).check()]
            assert not problems, f"{locale}: {problems}"

    def test_french_keeps_every_placeholder(self):
        # Babel's checks let a translation drop all of them; the reader would lose the value.
        for m in catalogue("fr"):
            if not m.id:
                continue
            wanted = set(PLACEHOLDER.findall("".join(m.id if isinstance(m.id, tuple) else [m.id])))
            *singular, plural = m.string if isinstance(m.string, tuple) else (m.string,)
            assert set(PLACEHOLDER.findall(plural)) == wanted, (m.id, plural)
            for form in singular:  # "un poste" may say the 1 in words
                assert set(PLACEHOLDER.findall(form)) <= wanted, (m.id, form)

    def test_both_catalogues_hold_the_same_messages(self):
        assert ids(catalogue("fr")) == ids(catalogue("en"))


class TestTranslator:
    """gettext, ngettext and pgettext read the .po, with no compile step."""

    @pytest.fixture
    def po(self, tmp_path) -> Path:
        catalog = Catalog(locale="fr", domain="ruche")
        catalog.add("Desk", "Poste")
        catalog.add(("%(n)s desk", "%(n)s desks"), ("%(n)s poste", "%(n)s postes", "%(n)s postes"))
        catalog.add("Open", "Ouverte", context="door")
        catalog.add("Open", "Ouvert", context="desk")
        catalog.add("Guessed", "Deviné", flags=["fuzzy"])
        buffer = io.BytesIO()
        write_po(buffer, catalog)
        path = tmp_path / "ruche.po"
        path.write_bytes(buffer.getvalue())
        return path

    def test_gettext(self, po):
        assert read_translator(po, "fr").gettext("Desk") == "Poste"

    def test_ngettext_follows_french_plurals(self, po):
        translator = read_translator(po, "fr")
        assert translator.ngettext("%(n)s desk", "%(n)s desks", 1) == "%(n)s poste"
        assert translator.ngettext("%(n)s desk", "%(n)s desks", 0) == "%(n)s poste"
        assert translator.ngettext("%(n)s desk", "%(n)s desks", 2) == "%(n)s postes"

    def test_pgettext_tells_contexts_apart(self, po):
        translator = read_translator(po, "fr")
        assert translator.pgettext("door", "Open") == "Ouverte"
        assert translator.pgettext("desk", "Open") == "Ouvert"

    def test_fuzzy_and_unknown_messages_stay_english(self, po):
        translator = read_translator(po, "fr")
        assert translator.gettext("Guessed") == "Guessed"
        assert translator.gettext("Never marked") == "Never marked"

    def test_shipped_catalogues(self):
        assert translations("fr").gettext("Sign in") == "Se connecter"
        assert translations("en").gettext("Sign in") == "Sign in"
        assert translations("fr") is translations("fr"), "read once per process"

    def test_unknown_locale_is_refused(self):
        with pytest.raises(UnknownLocaleError, match="Ruche speaks fr, en"):
            translations("de")


class TestChooseLocale:
    """A person's setting, then Accept-Language, then French."""

    @pytest.mark.parametrize(
        ("setting", "header", "expected"),
        [
            (None, None, "fr"),
            (None, "", "fr"),
            (None, "en-GB,en;q=0.9", "en"),
            (None, "de-DE,de;q=0.9,en;q=0.5,fr;q=0.4", "en"),
            (None, "fr-CH, en;q=0.8", "fr"),
            (None, "en;q=0.2, fr;q=0.9", "fr"),
            (None, "de, es", "fr"),
            (None, "EN-us", "en"),
            ("en", "fr", "en"),
            ("fr", "en", "fr"),
            ("de", "en", "en"),
            (None, "en;q=0, fr;q=0.1", "fr"),
            (None, ";;,=q,en;q=abc,*", "fr"),
        ],
    )
    def test_order(self, setting, header, expected):
        assert choose_locale(setting=setting, accept_language=header) == expected

    def test_header_order_by_quality_then_position(self):
        assert parse_accept_language("a;q=0.5, b, c;q=0.5, d;q=0.9") == ["b", "d", "a", "c"]


class TestFormats:
    """Babel writes values for the reader: French spaces and commas, the site's clock."""

    def test_amount_in_french_has_narrow_no_break_spaces(self):
        assert Formats("fr").amount(1234.5) == "1\u202f234,50\xa0€"
        assert Formats("fr").amount(Decimal("1234.50"), "EUR") == "1\u202f234,50\xa0€"

    def test_amount_in_english(self):
        assert Formats("en").amount(Decimal("1234.5")) == "€1,234.50"
        assert Formats("en").amount(12, "CHF") == "CHF12.00"

    def test_times_are_the_sites(self):
        winter = datetime(2026, 12, 7, 21, 5, tzinfo=UTC)
        summer = datetime(2026, 7, 7, 21, 5, tzinfo=UTC)
        assert Formats("fr", "Europe/Paris").time(winter) == "22:05"
        assert Formats("fr", "Europe/Paris").time(summer) == "23:05"
        assert Formats("en", "America/New_York").time(winter) == "16:05"

    def test_a_datetimes_day_is_the_sites(self):
        late = datetime(2026, 12, 7, 23, 30, tzinfo=UTC)
        assert Formats("fr", "Europe/Paris").date(late, "long") == "8 décembre 2026"
        assert Formats("en", "UTC").date(late, "long") == "7 December 2026"
        assert Formats("en").date(date(2026, 12, 7), "full") == "Monday, 7 December 2026"

    def test_datetime(self):
        moment = datetime(2026, 12, 7, 21, 5, tzinfo=UTC)
        assert Formats("fr", "Europe/Paris").datetime(moment) == "07/12/2026 22:05"
        assert Formats("en", "Europe/Paris").datetime(moment, "medium") == "7 Dec 2026, 22:05:00"

    @pytest.mark.parametrize(
        ("value", "fr", "en"),
        [
            (timedelta(minutes=90), "1\u202fh 30\xa0min", "1 hr 30 mins"),
            (timedelta(hours=2), "2\u202fh", "2 hrs"),
            (timedelta(seconds=59), "0\xa0min", "0 mins"),
            (timedelta(hours=1, minutes=1, seconds=30), "1\u202fh 1\xa0min", "1 hr 1 min"),
        ],
    )
    def test_durations(self, value, fr, en):
        assert Formats("fr").duration(value) == fr
        assert Formats("en").duration(value) == en

    def test_numbers(self):
        assert Formats("fr").number(1234.5) == "1\u202f234,5"
        assert Formats("en").number(1234.5) == "1,234.5"

    def test_naive_datetime_is_refused(self):
        with pytest.raises(ValueError, match="naive datetime"):
            Formats("fr", "Europe/Paris").time(datetime(2026, 12, 7, 21, 5))  # noqa: DTZ001

    def test_negative_duration_is_refused(self):
        with pytest.raises(ValueError, match="negative duration"):
            Formats("fr").duration(timedelta(minutes=-1))

    def test_unknown_timezone_and_locale_are_refused(self):
        with pytest.raises(ValueError, match="unknown timezone 'Europe/Pariss'"):
            Formats("fr", "Europe/Pariss")
        with pytest.raises(UnknownLocaleError):
            Formats("it")
