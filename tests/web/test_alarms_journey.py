"""A manager's alarms, in Chromium on the running site (journeys.py): the door is forced,
the alarm shows on the open alarms page within two seconds without a reload, the manager
acknowledges it, and the audit log shows who and when with its chain intact. The pages
pass axe and fit a phone; the screenshots are in test-artifacts/pages/."""

from __future__ import annotations

import threading
import time

import pytest
from journeys import MANAGER, Journey

from ruche.sim.door import ScriptedPerson, force_through

pytestmark = pytest.mark.integration

ALARM_WITHIN_S = 2.0
"""The longest a new alarm may take to show on an open alarms page."""
OPEN_ALARM = ".alarm[data-alarm^='audit:']:not(.alarm-acked)"


def test_a_forced_door_is_seen_acknowledged_and_logged(journey: Journey, browse, audit) -> None:
    # The manager's own language, French, outranks the browser's.
    page = browse("desktop", locale="en-GB")
    journey.sign_in(page, MANAGER)
    assert page.url == journey.url("/"), "staff land on the live floor"
    assert page.get_attribute("html", "lang") == "fr"
    page.wait_for_selector('#link[data-state="live"]', timeout=5000)
    audit(page, "floor-fr-desktop")

    page.get_by_role("link", name="Alarmes").click()
    page.wait_for_url("**/manage/alarms")
    assert page.locator("#alarm-summary").inner_text() == "0 alarme ouverte"

    # Someone forces the door; the page is left alone, as on a screen at reception.
    person = threading.Thread(
        target=ScriptedPerson(journey.door).run, args=(force_through(hold_s=0.3),)
    )
    forced = time.monotonic()
    person.start()
    page.wait_for_selector(OPEN_ALARM, timeout=ALARM_WITHIN_S * 1000 + 3000)
    shown = time.monotonic() - forced
    person.join(5)
    print(f"the forced door showed on the alarms page {shown * 1000:.0f} ms later")
    assert shown < ALARM_WITHIN_S
    alarm = page.locator(OPEN_ALARM).first
    assert "Porte forcée" in alarm.inner_text()
    assert "porte front" in alarm.inner_text()
    assert page.locator("#alarm-summary").inner_text() == "1 alarme ouverte"
    audit(page, "alarms-fr-desktop")

    key = alarm.get_attribute("data-alarm") or ""
    with page.expect_navigation():
        alarm.get_by_role("button", name="Acquitter").click()
    assert page.locator(".message-success").inner_text() == "L'alarme est acquittée."
    acked = page.locator(f".alarm-acked[data-alarm='{key}']")
    assert f"Acquittée par {MANAGER}" in acked.inner_text()
    assert page.locator(OPEN_ALARM).count() == 0

    page.get_by_role("link", name="Journal d'audit").click()
    page.wait_for_url("**/manage/audit")
    newest = page.locator("tbody tr").first
    assert newest.get_attribute("data-kind") == "alarm_ack"
    assert MANAGER in newest.inner_text()
    assert f"forced #{key.removeprefix('audit:')}" in newest.inner_text()
    page.get_by_role("button", name="Vérifier la chaîne").click()
    page.wait_for_url("**verify=1")
    assert page.locator(".message-success").inner_text().startswith("La chaîne est intacte")
    audit(page, "audit-fr-desktop")

    # A phone, switched to English: the same pages fit its width.
    phone = browse("phone", locale="fr-FR")
    journey.sign_in(phone, MANAGER)
    phone.get_by_role("link", name="English").click()
    for path, name in [("/manage/alarms", "alarms"), ("/manage/audit", "audit"),
                       ("/manage/utilisation", "utilisation"), ("/", "floor")]:  # fmt: skip
        phone.goto(journey.url(path))
        assert phone.get_attribute("html", "lang") == "en"
        audit(phone, f"{name}-en-phone")
        width = phone.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"{path} scrolls sideways on a phone: {width}"
        if path == "/manage/alarms":
            assert f"Acknowledged by {MANAGER}" in phone.locator(".alarm-acked").first.inner_text()
