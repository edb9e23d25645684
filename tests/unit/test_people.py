"""The pure parts of signing in: where a sign-in may lead, the e-mails' words, passwords."""

from __future__ import annotations

import pytest
from argon2 import extract_parameters

from ruche.server.api.routes.signin import local_path
from ruche.server.errors import Invalid
from ruche.server.people import passwords
from ruche.server.people.mail import compose
from ruche.server.people.passwords import check_new_password, hash_password, verify_password
from ruche.server.people.texts import MESSAGES


class TestLocalPath:
    """`next` leads only to a path on this site; anything else leads home."""

    @pytest.mark.parametrize("path", ["/", "/bookings", "/bookings?day=2&site=lyon"])
    def test_a_local_path_is_kept(self, path):
        assert local_path(path) == path

    @pytest.mark.parametrize(
        "path",
        ["", None, "//evil.example/x", "/\\evil.example", "https://evil.example/",
         "bookings", "/a\nb", "/" + "x" * 3000],
    )  # fmt: skip
    def test_anything_else_is_home(self, path):
        assert local_path(path) == "/"


class TestMail:
    """Each e-mail exists in French and English, as text and as HTML, with its link."""

    def test_french_and_english_differ(self):
        french = compose("signin", locale="fr", to="a@example.org", link="http://x/", minutes=5)
        english = compose("signin", locale="en", to="a@example.org", link="http://x/", minutes=5)
        assert french.subject == "Votre lien de connexion à Ruche"
        assert english.subject == MESSAGES["signin_subject"]
        assert "expire dans 5 minutes" in french.text
        assert "expires in 5 minutes" in english.text

    @pytest.mark.parametrize("locale", ["fr", "en"])
    def test_the_link_is_in_both_parts(self, locale):
        link = "https://ruche.example.org/signin/link/abc?x=1&y=2"
        mail = compose("signin", locale=locale, to="ada@example.org", link=link, minutes=15)
        assert link in mail.text
        assert "https://ruche.example.org/signin/link/abc?x=1&amp;y=2" in mail.html
        assert "15" in mail.text
        assert mail.subject == {"fr": "Votre lien de connexion à Ruche",
                                "en": "Your Ruche sign-in link"}[locale]  # fmt: skip

    def test_an_unknown_locale_reads_french(self):
        mail = compose("reset", locale="de", to="a@example.org", link="http://x/", minutes=60)
        assert mail.subject == "Choisir un nouveau mot de passe Ruche"


class TestPasswords:
    """argon2id hashes; short passwords refused with a sentence; no hash, no match."""

    def test_a_hash_verifies_its_password_only(self):
        stored = hash_password("correct horse battery")
        assert stored.startswith("$argon2id$")
        assert verify_password(stored, "correct horse battery")
        assert not verify_password(stored, "correct horse")
        assert not verify_password(None, "correct horse battery")
        assert not verify_password("not a hash", "correct horse battery")

    def test_no_account_costs_what_a_wrong_password_does(self):
        # What an unknown e-mail is verified against: today's parameters, so the same work.
        stored = hash_password("correct horse battery")
        assert extract_parameters(passwords._DUMMY_HASH) == extract_parameters(stored)
        assert not verify_password(None, "")

    def test_a_short_password_is_refused(self):
        with pytest.raises(Invalid, match="at least 10"):
            check_new_password("short")
