"""The alarms' pure rules: keys, offline agents, what an acknowledgement logs; and
utilisation folded onto the hours of the day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ruche.server.access.alarms import (
    AgentAlarmKey,
    Alarm,
    AlarmKind,
    DoorAlarmKey,
    ack_reason,
    actor_name,
    agent_key,
    door_key,
    offline_alarms,
    parse_key,
)
from ruche.server.errors import Invalid
from ruche.server.occupancy.hour_of_day import by_hour_of_day
from ruche.server.occupancy.utilisation import (
    Bucket,
    DeskBooking,
    DeskPlace,
    DeskTime,
    Level,
    Opening,
    utilisation,
)
from ruche.server.registry.schedule import Schedule

T0 = datetime(2026, 12, 7, 23, 5, 9, tzinfo=UTC)
LONGEST = "a" * 64


@dataclass(frozen=True)
class Heard:
    online: bool
    reported_at: datetime
    heard_at: datetime


class TestKeys:
    """A key names one alarm and reads back to it; anything else is Invalid."""

    def test_round_trip(self):
        assert parse_key(door_key(42)) == DoorAlarmKey(42)
        key = agent_key(LONGEST, LONGEST, T0 + timedelta(microseconds=999))
        assert len(key) <= 200, "fits alarm_acks.alarm"
        assert parse_key(key) == AgentAlarmKey(LONGEST, LONGEST, T0)

    @pytest.mark.parametrize(
        "key",
        ["", "audit:", "audit:0", "audit:-1", "audit:1 ", "audit:99999999999999999999",
         "audit:9223372036854775808",
         "agent:lyon/a1", "agent:lyon/a1:2026-12-07", "agent:lyon/a1:2026-13-40T99:99:99Z",
         "agent:/a1:2026-12-07T23:05:09Z", "door:front"],
    )  # fmt: skip
    def test_not_a_key(self, key):
        with pytest.raises(Invalid):
            parse_key(key)

    def test_an_agent_time_needs_a_timezone(self):
        with pytest.raises(Invalid):
            agent_key("lyon", "a1", T0.replace(tzinfo=None))


class TestOfflineAlarms:
    """Registered agents whose last status says offline, newest first."""

    def test_only_registered_and_offline(self):
        links = {
            "a1": Heard(False, T0, T0 + timedelta(seconds=1)),
            "a2": Heard(True, T0, T0),
            "a3": Heard(False, T0 - timedelta(hours=1), T0 + timedelta(seconds=5)),
            "ghost": Heard(False, T0, T0),
        }
        alarms = offline_alarms("lyon", links, ["a1", "a2", "a3", "a4"])
        assert [a.agent for a in alarms] == ["a3", "a1"]
        assert alarms[1].key == agent_key("lyon", "a1", T0)
        assert alarms[1].at == T0 + timedelta(seconds=1), "when the server heard it"


class TestAckReason:
    """What the alarm_ack row's reason says fits its column, for any alarm."""

    def test_fits_64(self):
        door = Alarm(key=door_key(2**63 - 1), kind=AlarmKind.HELD_OPEN, site="s", at=T0)
        agent = Alarm(key=agent_key(LONGEST, LONGEST, T0), kind=AlarmKind.AGENT_OFFLINE,
                      site=LONGEST, at=T0, agent=LONGEST)  # fmt: skip
        assert ack_reason(door) == f"held_open #{2**63 - 1}"
        assert ack_reason(agent) == "agent_offline 2026-12-07T23:05:09Z"
        assert max(len(ack_reason(door)), len(ack_reason(agent))) <= 64

    @pytest.mark.parametrize(
        ("actor", "name"),
        [("person:3:max@example.org", "max@example.org"), ("api-key:9:door kiosk", "door kiosk"),
         ("person:x:odd", "person:x:odd"), ("cli", "cli"), ("person:4:a:b", "a:b")],
    )  # fmt: skip
    def test_actor_name(self, actor, name):
        assert actor_name(actor) == name


class TestHourOfDay:
    """Hour buckets summed by local hour; the repeated hour of autumn counts twice."""

    def test_the_night_the_clocks_go_back(self):
        paris = ZoneInfo("Europe/Paris")
        day = date(2026, 10, 25)  # 03:00 CEST becomes 02:00 CET
        start = datetime(2026, 10, 25, 0, 0, tzinfo=UTC)  # 02:00 CEST
        [zone] = utilisation(
            site="lyon", desks=[DeskPlace("d1", "z")],
            sessions=[DeskTime("d1", start, start + timedelta(hours=2))],
            bookings=[DeskBooking("d1", start, start + timedelta(hours=2))], visits=[],
            opening=Opening(Schedule.always(), paris), first=day, last=day + timedelta(days=1),
            bucket=Bucket.HOUR, by=Level.ZONE, now=datetime(2026, 11, 1, tzinfo=UTC),
        )  # fmt: skip
        hours = {h.hour: h for h in by_hour_of_day(zone)}
        assert len(hours) == 24
        assert hours[2].capacity == timedelta(hours=2), "two clock hours 02:00-03:00"
        assert hours[2].used == hours[2].booked == timedelta(hours=2)
        assert hours[2].used_share == 1.0
        assert hours[3].used == timedelta(0)
