"""`[influx]` in the server's config: the retention policy 2.x maps to a bucket, and one
way to log in, said at start when there are two or half of one."""

from __future__ import annotations

from pathlib import Path

import pytest

from ruche.server.settings import ServerConfigError, ServerSettings, load_server_settings

BASE = '[mqtt]\npassword = "server-password-long-enough"\n'


def load(tmp_path: Path, influx: str) -> ServerSettings:
    config = tmp_path / "server.toml"
    config.write_text(BASE + "[influx]\n" + influx, encoding="utf-8")
    return load_server_settings(config)


class TestInfluxSettings:
    """What each InfluxDB needs is read from `[influx]`; contradictions are refused."""

    def test_2x_token_and_retention_policy(self, tmp_path: Path) -> None:
        settings = load(tmp_path, 'token = "t0k3n"\nretention_policy = "ninety_days"\n')
        assert settings.influx is not None
        assert settings.influx.retention_policy == "ninety_days"
        assert settings.influx.token is not None
        assert settings.influx.token.get_secret_value() == "t0k3n"

    def test_1x_user_without_retention_policy(self, tmp_path: Path) -> None:
        settings = load(tmp_path, 'username = "ruche"\npassword = "pw"\n')
        assert settings.influx is not None
        assert settings.influx.retention_policy is None

    @pytest.mark.parametrize(
        ("influx", "reason"),
        [
            ('password = "pw"\n', "password is set without username"),
            ('token = "t"\nusername = "ruche"\npassword = "pw"\n',
             "set token (2.x, 3.x) or username and password (1.x), not both"),
            ('retention_policy = ""\n', "influx.retention_policy"),
        ],
    )  # fmt: skip
    def test_refused(self, tmp_path: Path, influx: str, reason: str) -> None:
        with pytest.raises(ServerConfigError, match="influx") as caught:
            load(tmp_path, influx)
        assert reason in str(caught.value)
