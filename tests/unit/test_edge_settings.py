"""The agent's configuration: refused at start with the exact field and reason."""

from __future__ import annotations

import pytest

from ruche.edge.settings import ConfigError, load_settings

GOOD = """
site = "lyon"
agent = "door-a"
site_key = "00112233445566778899aabbccddeeff"
[mqtt]
username = "lyon/door-a"
password = "a-long-enough-password"
[[doors]]
id = "front"
reader = "udp:127.0.0.1:5555"
relay_pin = 17
contact_pin = 27
[[desks]]
id = "desk-1"
serial = "/dev/ttyUSB0"
"""


class TestAgentSettings:
    """A good file loads; each bad field is named with its reason; RUCHE_ overrides win."""

    def test_good_file(self, tmp_path):
        path = tmp_path / "agent.toml"
        path.write_text(GOOD)
        settings = load_settings(path)
        assert settings.doors[0].reader == "udp:127.0.0.1:5555"
        assert settings.desks[0].leave_s == 60.0
        assert settings.request_timeout_ms == 300
        assert settings.offline_policy == "fail_secure"

    def test_every_bad_field_is_named(self, tmp_path):
        path = tmp_path / "agent.toml"
        path.write_text(
            GOOD.replace('agent = "door-a"', 'agent = "door a"')
            .replace("00112233445566778899aabbccddeeff", "abcd")
            .replace("a-long-enough-password", "change-me")
            .replace("udp:127.0.0.1:5555", "bluetooth")
            .replace('serial = "/dev/ttyUSB0"', "")
        )
        with pytest.raises(ConfigError) as info:
            load_settings(path)
        text = str(info.value)
        for field, reason in [
            ("agent", "should match pattern"),
            ("site_key", "at least 16 bytes"),
            ("mqtt.password", "placeholder"),
            ("doors.0.reader", "not an nfcpy device"),
            ("desks.0", "exactly one of serial"),
        ]:
            assert f"{field}: " in text
            assert reason in text

    def test_shared_pin_is_refused(self, tmp_path):
        path = tmp_path / "agent.toml"
        path.write_text(GOOD.replace("contact_pin = 27", "contact_pin = 17"))
        with pytest.raises(ConfigError, match="uses one pin twice"):
            load_settings(path)

    def test_missing_and_unreadable_files(self, tmp_path):
        with pytest.raises(ConfigError, match="no such config file"):
            load_settings(tmp_path / "nope.toml")
        broken = tmp_path / "broken.toml"
        broken.write_text("site = \n")
        with pytest.raises(ConfigError, match="cannot read"):
            load_settings(broken)

    def test_environment_overrides_the_file(self, tmp_path, monkeypatch):
        path = tmp_path / "agent.toml"
        path.write_text(GOOD)
        monkeypatch.setenv("RUCHE_MQTT__HOST", "broker.lan")
        monkeypatch.setenv("RUCHE_REQUEST_TIMEOUT_MS", "250")
        settings = load_settings(path)
        assert settings.mqtt.host == "broker.lan"
        assert settings.request_timeout_ms == 250
