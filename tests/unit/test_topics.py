"""Topic builders, parser and subscription filters of the wire contract."""

from __future__ import annotations

import pytest

from ruche.broker import (
    AGENT_CHANNELS,
    EVENT_CHANNELS,
    SERVER_CHANNELS,
    Channel,
    ContractError,
    Reason,
    Topic,
    agent_subtree,
    everything,
    shared,
    topic_filter,
)
from ruche.broker.topics import MAX_TOPIC_LENGTH, check_id

SITE = "paris-11"
AGENT = "pi.hall_2"
PREFIX = f"ruche/v1/{SITE}/{AGENT}"

# One row per line of the contract table: the builder's topic and its wire string.
CONTRACT_TABLE = [
    (Topic.status(SITE, AGENT), f"{PREFIX}/status"),
    (Topic.presence(SITE, AGENT, "desk-07"), f"{PREFIX}/desk/desk-07/presence"),
    (Topic.desk_badge(SITE, AGENT, "desk-07"), f"{PREFIX}/desk/desk-07/badge"),
    (Topic.tap(SITE, AGENT, "front"), f"{PREFIX}/door/front/tap"),
    (Topic.door_event(SITE, AGENT, "front"), f"{PREFIX}/door/front/event"),
    (Topic.cmd(SITE, AGENT), f"{PREFIX}/cmd"),
    (Topic.allowlist(SITE, AGENT), f"{PREFIX}/allowlist"),
    (Topic.ack(SITE, AGENT), f"{PREFIX}/ack"),
    (Topic.config(SITE, AGENT), f"{PREFIX}/config"),
]
TABLE_IDS = [str(topic.channel) for topic, _ in CONTRACT_TABLE]

BAD_IDS = [
    "",
    "+",
    "#",
    "a+b",
    "a#",
    "$SYS",
    "$share",
    "a/b",
    "-leading-dash",
    "_leading_underscore",
    ".leading-dot",
    "x" * 65,
    "with space",
    "café",
    "tab\there",
    "new\nline",
    "nul\x00",
]


class TestBuilders:
    """Each builder writes the exact topic string of the contract table."""

    @pytest.mark.parametrize(("topic", "wire"), CONTRACT_TABLE, ids=TABLE_IDS)
    def test_builder_writes_contract_string(self, topic: Topic, wire: str) -> None:
        assert str(topic) == wire

    def test_table_covers_every_channel(self) -> None:
        assert {topic.channel for topic, _ in CONTRACT_TABLE} == set(Channel)

    def test_device_channels_carry_the_device_id(self) -> None:
        assert Topic.presence(SITE, AGENT, "d1").device == "d1"
        assert Topic.desk_badge(SITE, AGENT, "d1").device == "d1"
        assert Topic.tap(SITE, AGENT, "front").device == "front"
        assert Topic.door_event(SITE, AGENT, "front").device == "front"

    def test_agent_level_channels_have_no_device(self) -> None:
        for build in (Topic.status, Topic.cmd, Topic.allowlist, Topic.ack, Topic.config):
            assert build(SITE, AGENT).device is None

    def test_longest_ids_are_accepted(self) -> None:
        longest = "a" * 64
        topic = Topic.presence(longest, longest, longest)
        assert str(topic) == f"ruche/v1/{longest}/{longest}/desk/{longest}/presence"

    def test_topics_are_hashable_values(self) -> None:
        assert Topic.status(SITE, AGENT) == Topic.status(SITE, AGENT)
        assert len({Topic.status(SITE, AGENT), Topic.status(SITE, AGENT)}) == 1
        assert Topic.tap(SITE, AGENT, "a") != Topic.door_event(SITE, AGENT, "a")


class TestChannelSets:
    """Channels split into what agents publish and what the server publishes to them."""

    def test_agent_and_server_channels_partition_all_channels(self) -> None:
        assert set(Channel) == AGENT_CHANNELS | SERVER_CHANNELS
        assert not AGENT_CHANNELS & SERVER_CHANNELS

    def test_event_channels_are_agent_channels_without_status(self) -> None:
        assert AGENT_CHANNELS - {Channel.STATUS} == EVENT_CHANNELS

    def test_server_publishes_cmd_allowlist_ack_and_config(self) -> None:
        assert {Channel.CMD, Channel.ALLOWLIST, Channel.ACK, Channel.CONFIG} == SERVER_CHANNELS


class TestParseRoundTrip:
    """Parsing the wire string of any built topic gives back the same Topic."""

    @pytest.mark.parametrize(("topic", "wire"), CONTRACT_TABLE, ids=TABLE_IDS)
    def test_parse_of_str_is_identity(self, topic: Topic, wire: str) -> None:
        assert Topic.parse(str(topic)) == topic
        assert Topic.parse(wire) == topic

    @pytest.mark.parametrize("wire", [wire for _, wire in CONTRACT_TABLE], ids=TABLE_IDS)
    def test_str_of_parse_is_identity(self, wire: str) -> None:
        assert str(Topic.parse(wire)) == wire

    def test_parse_keeps_site_agent_and_device(self) -> None:
        topic = Topic.parse("ruche/v1/lyon/pi-3/door/back.door/tap")
        assert topic == Topic("lyon", "pi-3", Channel.TAP, "back.door")

    def test_device_named_like_a_keyword_is_still_a_device(self) -> None:
        topic = Topic.parse("ruche/v1/s/a/desk/status/presence")
        assert topic == Topic.presence("s", "a", "status")

    def test_ids_named_like_the_root_are_still_ids(self) -> None:
        assert Topic.parse("ruche/v1/ruche/v1/cmd") == Topic.cmd("ruche", "v1")


class TestParseRejects:
    """Topics outside the contract raise ContractError with reason bad_topic."""

    @pytest.mark.parametrize(
        "topic",
        [
            pytest.param("", id="empty"),
            pytest.param("/", id="slash"),
            pytest.param("ruche", id="root-only"),
            pytest.param("ruche/v1", id="version-only"),
            pytest.param(f"{PREFIX}", id="no-tail"),
            pytest.param(f"{PREFIX}/", id="empty-tail"),
            pytest.param(f"{PREFIX}/status/", id="trailing-slash"),
            pytest.param(f"/{PREFIX}/status", id="leading-slash"),
            pytest.param(f"Ruche/v1/{SITE}/{AGENT}/status", id="root-case"),
            pytest.param(f"rouche/v1/{SITE}/{AGENT}/status", id="wrong-root"),
            pytest.param(f"$SYS/v1/{SITE}/{AGENT}/status", id="sys-root"),
            pytest.param(f"$share/g/{PREFIX}/status", id="shared-prefix"),
            pytest.param(f"{PREFIX}/STATUS", id="tail-case"),
            pytest.param(f"{PREFIX}/state", id="unknown-tail"),
            pytest.param(f"{PREFIX}/desk/d1/occupancy", id="unknown-desk-tail"),
            pytest.param(f"{PREFIX}/door/d1/presence", id="door-presence"),
            pytest.param(f"{PREFIX}/desk/d1/tap", id="desk-tap"),
            pytest.param(f"{PREFIX}/desk/presence", id="missing-desk"),
            pytest.param(f"{PREFIX}/door/tap", id="missing-door"),
            pytest.param(f"{PREFIX}/desk//presence", id="empty-desk"),
            pytest.param(f"{PREFIX}/status/d1", id="device-on-status"),
            pytest.param(f"{PREFIX}/cmd/d1", id="device-on-cmd"),
            pytest.param(f"{PREFIX}/d1/ack", id="device-before-ack"),
            pytest.param(f"{PREFIX}/desk/d1/presence/extra", id="too-many-levels"),
            pytest.param(f"{PREFIX}/desk/d1/d2/presence", id="two-devices"),
            pytest.param(f"ruche/v1/{SITE}/status", id="missing-agent"),
            pytest.param(f"ruche/v1//{AGENT}/status", id="empty-site"),
            pytest.param(f"ruche/v1/{SITE}//status", id="empty-agent"),
            pytest.param(f"ruche/v1/+/{AGENT}/status", id="plus-site"),
            pytest.param(f"ruche/v1/{SITE}/+/status", id="plus-agent"),
            pytest.param(f"ruche/v1/{SITE}/#", id="hash-tail"),
            pytest.param(f"{PREFIX}/#", id="subtree-filter"),
            pytest.param(f"{PREFIX}/desk/+/presence", id="plus-desk"),
            pytest.param(f"{PREFIX}/door/#/tap", id="hash-door"),
            pytest.param(f"ruche/v1/$SYS/{AGENT}/status", id="dollar-site"),
            pytest.param(f"ruche/v1/{SITE}/$agent/status", id="dollar-agent"),
            pytest.param(f"{PREFIX}/door/$d/event", id="dollar-door"),
            pytest.param(f"ruche/v1/{'s' * 65}/{AGENT}/status", id="long-site"),
            pytest.param(f"ruche/v1/{SITE}/{'a' * 65}/status", id="long-agent"),
            pytest.param(f"{PREFIX}/desk/{'d' * 65}/presence", id="long-desk"),
            pytest.param(f"ruche/v1/caf\u00e9/{AGENT}/status", id="unicode-site"),
            pytest.param(f"ruche/v1/{SITE}/pi 2/status", id="space-in-agent"),
            pytest.param(f"{PREFIX}/desk/-d1/presence", id="dash-first-desk"),
            pytest.param(f"{PREFIX}/status\x00", id="nul"),
            pytest.param(f"{PREFIX}/desk/d1\n/presence", id="newline-desk"),
        ],
    )
    def test_bad_topic(self, topic: str) -> None:
        with pytest.raises(ContractError) as info:
            Topic.parse(topic)
        assert info.value.reason is Reason.BAD_TOPIC

    def test_over_long_topic(self) -> None:
        topic = f"{PREFIX}/desk/{'d' * MAX_TOPIC_LENGTH}/presence"
        with pytest.raises(ContractError) as info:
            Topic.parse(topic)
        assert info.value.reason is Reason.BAD_TOPIC
        assert str(MAX_TOPIC_LENGTH) in info.value.detail

    @pytest.mark.parametrize("value", [None, b"ruche/v1/s/a/status", 42])
    def test_non_string_topic(self, value: object) -> None:
        with pytest.raises(ContractError) as info:
            Topic.parse(value)  # type: ignore[arg-type]
        assert info.value.reason is Reason.BAD_TOPIC


class TestParseVersion:
    """A well-formed topic of another contract version raises unsupported_version."""

    @pytest.mark.parametrize(
        "topic",
        [
            f"ruche/v2/{SITE}/{AGENT}/status",
            f"ruche/v2/{SITE}/{AGENT}/desk/d1/presence",
            f"ruche/v0/{SITE}/{AGENT}/ack",
            f"ruche/v10/{SITE}/{AGENT}/cmd",
        ],
    )
    def test_other_version(self, topic: str) -> None:
        with pytest.raises(ContractError) as info:
            Topic.parse(topic)
        assert info.value.reason is Reason.UNSUPPORTED_VERSION
        assert "v1" in info.value.detail


class TestTopicConstruction:
    """Building a Topic checks its ids and whether its channel takes a device."""

    @pytest.mark.parametrize("bad", BAD_IDS)
    def test_bad_site(self, bad: str) -> None:
        with pytest.raises(ContractError) as info:
            Topic.status(bad, AGENT)
        assert info.value.reason is Reason.BAD_TOPIC

    @pytest.mark.parametrize("bad", BAD_IDS)
    def test_bad_agent(self, bad: str) -> None:
        with pytest.raises(ContractError) as info:
            Topic.cmd(SITE, bad)
        assert info.value.reason is Reason.BAD_TOPIC

    @pytest.mark.parametrize("bad", BAD_IDS)
    def test_bad_device(self, bad: str) -> None:
        with pytest.raises(ContractError) as info:
            Topic.door_event(SITE, AGENT, bad)
        assert info.value.reason is Reason.BAD_TOPIC

    @pytest.mark.parametrize(
        "channel", [Channel.PRESENCE, Channel.DESK_BADGE, Channel.TAP, Channel.DOOR_EVENT]
    )
    def test_device_channel_without_device(self, channel: Channel) -> None:
        with pytest.raises(ContractError) as info:
            Topic(SITE, AGENT, channel)
        assert info.value.reason is Reason.BAD_TOPIC

    @pytest.mark.parametrize(
        "channel", [Channel.STATUS, Channel.CMD, Channel.ALLOWLIST, Channel.ACK, Channel.CONFIG]
    )
    def test_agent_channel_with_device(self, channel: Channel) -> None:
        with pytest.raises(ContractError) as info:
            Topic(SITE, AGENT, channel, "d1")
        assert info.value.reason is Reason.BAD_TOPIC

    def test_non_string_id(self) -> None:
        with pytest.raises(ContractError) as info:
            Topic(SITE, 7, Channel.STATUS)  # type: ignore[arg-type]
        assert info.value.reason is Reason.BAD_TOPIC

    def test_topic_is_frozen(self) -> None:
        topic = Topic.status(SITE, AGENT)
        with pytest.raises(AttributeError):
            topic.site = "elsewhere"  # type: ignore[misc]


class TestCheckId:
    """check_id returns a valid id unchanged and refuses anything else as bad_topic."""

    @pytest.mark.parametrize("good", ["a", "A9", "9", "desk-07", "pi.hall_2", "x" * 64])
    def test_accepts(self, good: str) -> None:
        assert check_id(good) == good

    @pytest.mark.parametrize("bad", BAD_IDS)
    def test_refuses(self, bad: str) -> None:
        with pytest.raises(ContractError) as info:
            check_id(bad, "desk")
        assert info.value.reason is Reason.BAD_TOPIC
        assert info.value.detail.startswith("desk ")

    def test_error_is_a_value_error_naming_its_reason(self) -> None:
        with pytest.raises(ValueError, match=r"^bad_topic: ") as info:
            check_id("+")
        assert isinstance(info.value, ContractError)


class TestTopicFilter:
    """topic_filter puts `+` for any site, agent or device and checks the ids it is given."""

    @pytest.mark.parametrize(
        ("channel", "expected"),
        [
            (Channel.STATUS, "ruche/v1/+/+/status"),
            (Channel.PRESENCE, "ruche/v1/+/+/desk/+/presence"),
            (Channel.DESK_BADGE, "ruche/v1/+/+/desk/+/badge"),
            (Channel.TAP, "ruche/v1/+/+/door/+/tap"),
            (Channel.DOOR_EVENT, "ruche/v1/+/+/door/+/event"),
            (Channel.CMD, "ruche/v1/+/+/cmd"),
            (Channel.ALLOWLIST, "ruche/v1/+/+/allowlist"),
            (Channel.ACK, "ruche/v1/+/+/ack"),
        ],
    )
    def test_any_site_and_agent(self, channel: Channel, expected: str) -> None:
        assert topic_filter(channel) == expected

    def test_one_site(self) -> None:
        assert topic_filter(Channel.TAP, site=SITE) == f"ruche/v1/{SITE}/+/door/+/tap"

    def test_one_agent(self) -> None:
        assert topic_filter(Channel.CMD, site=SITE, agent=AGENT) == f"{PREFIX}/cmd"

    def test_one_agent_with_device(self) -> None:
        assert topic_filter(Channel.PRESENCE, site=SITE, agent=AGENT) == (
            f"{PREFIX}/desk/+/presence"
        )

    @pytest.mark.parametrize("bad", ["#", "", "a/b", "$SYS", "x" * 65])
    def test_bad_site_or_agent(self, bad: str) -> None:
        with pytest.raises(ContractError) as info:
            topic_filter(Channel.STATUS, site=bad)
        assert info.value.reason is Reason.BAD_TOPIC
        with pytest.raises(ContractError) as info:
            topic_filter(Channel.STATUS, agent=bad)
        assert info.value.reason is Reason.BAD_TOPIC


class TestSubtreesAndShared:
    """Subtree filters cover one agent or the whole version; shared wraps a filter for a group."""

    def test_agent_subtree(self) -> None:
        assert agent_subtree(SITE, AGENT) == f"{PREFIX}/#"

    def test_agent_subtree_refuses_wildcards(self) -> None:
        with pytest.raises(ContractError) as info:
            agent_subtree("+", AGENT)
        assert info.value.reason is Reason.BAD_TOPIC
        with pytest.raises(ContractError):
            agent_subtree(SITE, "#")

    def test_everything(self) -> None:
        assert everything() == "ruche/v1/#"

    def test_shared(self) -> None:
        assert shared("ingest", topic_filter(Channel.PRESENCE)) == (
            "$share/ingest/ruche/v1/+/+/desk/+/presence"
        )

    def test_shared_with_one_agent(self) -> None:
        assert shared("workers.1", agent_subtree(SITE, AGENT)) == f"$share/workers.1/{PREFIX}/#"

    @pytest.mark.parametrize("bad", ["", "+", "#", "a/b", "$g", "x" * 65])
    def test_shared_refuses_bad_group(self, bad: str) -> None:
        with pytest.raises(ContractError) as info:
            shared(bad, everything())
        assert info.value.reason is Reason.BAD_TOPIC
