"""Rendering of mosquitto.conf, the password file and the ACL, without running Mosquitto."""

from __future__ import annotations

from pathlib import Path

import pytest

from ruche.broker.accounts import (
    Accounts,
    AccountsError,
    AgentAccount,
    ServerAccount,
    load_accounts,
)
from ruche.broker.acl import render_acl
from ruche.broker.mosquitto_config import (
    BrokerOptions,
    TlsOptions,
    render_conf,
    render_passwd,
    write_config,
)
from ruche.broker.passwords import hash_password, verify_password

# Written by `mosquitto_passwd -c -b pw alice secret` (Mosquitto 2.0.11).
MOSQUITTO_PASSWD_ENTRY = (
    "$7$101$JgSaQE/M7z7LGH8v$eN5XrHI8drAdlz8FX0Vq38PzB91sa/eps/oibVRMNu1f2Mu0/KQvlnUgT"
    "c1LXd55OUjiXVCo+I+mSD9c3IlOwA=="
)
PW = "a-password-long-enough"


def _accounts(*agents: tuple[str, str]) -> Accounts:
    return Accounts(
        server=ServerAccount(password=PW),
        agents=tuple(AgentAccount(site=s, id=a, password=PW) for s, a in agents),
    )


def _conf(**options: object) -> str:
    return render_conf(
        BrokerOptions(**options),  # type: ignore[arg-type]
        passwd=Path("/x/passwd"),
        acl=Path("/x/acl"),
        data=Path("/x/data"),
    )


class TestPasswords:
    """Hashes are Mosquitto's own `$7$` PBKDF2-SHA512 format."""

    def test_verifies_an_entry_written_by_mosquitto_passwd(self):
        assert verify_password("secret", MOSQUITTO_PASSWD_ENTRY)
        assert not verify_password("Secret", MOSQUITTO_PASSWD_ENTRY)

    def test_own_hash_has_mosquitto_shape_and_verifies(self):
        entry = hash_password("hunter2-but-longer")
        _, kind, iterations, salt, digest = entry.split("$")
        assert (kind, iterations) == ("7", "20000")
        assert len(salt) == 16
        assert len(digest) == 88
        assert verify_password("hunter2-but-longer", entry)
        assert not verify_password("hunter3-but-longer", entry)

    def test_salts_differ(self):
        assert hash_password("same-password-here") != hash_password("same-password-here")

    def test_garbage_entry_does_not_verify(self):
        assert not verify_password("x", "not-a-hash")
        assert not verify_password("x", "$6$a$b$c")


class TestConf:
    """The generated mosquitto.conf makes no-loss the default and says why."""

    @pytest.mark.parametrize(
        "line",
        [
            "allow_anonymous false",
            "set_tcp_nodelay true",
            "max_inflight_messages 4000",
            "max_queued_messages 1000000",
            "message_size_limit 4194304",
            "persistence true",
            "password_file /x/passwd",
            "acl_file /x/acl",
            "listener 1883 127.0.0.1",
        ],
    )
    def test_tuned_setting_present(self, line):
        assert line in _conf().splitlines()

    def test_every_tuned_setting_has_a_comment_above(self):
        lines = _conf().splitlines()
        for key in ("set_tcp_nodelay", "max_inflight_messages", "max_queued_messages",
                    "message_size_limit", "persistence"):  # fmt: skip
            index = next(i for i, line in enumerate(lines) if line.startswith(key + " "))
            assert lines[index - 1].startswith("#"), key

    def test_no_tls_listener_without_certificates(self):
        assert "certfile" not in _conf()

    def test_tls_listener_with_certificates(self):
        tls = TlsOptions(certfile=Path("/c.pem"), keyfile=Path("/k.pem"), cafile=Path("/ca.pem"))
        lines = _conf(tls=tls).splitlines()
        assert "listener 8883 0.0.0.0" in lines
        assert "certfile /c.pem" in lines
        assert "keyfile /k.pem" in lines
        assert "cafile /ca.pem" in lines

    def test_run_as(self):
        assert "user ruche" in _conf(run_as="ruche").splitlines()
        assert not any(line.startswith("user ") for line in _conf().splitlines())


class TestAcl:
    """Each agent may write only its own events and read only what the server sends it."""

    def test_agent_rules(self):
        acl = render_acl(_accounts(("lyon", "door-a"))).splitlines()
        start = acl.index("user lyon/door-a")
        rules = set(acl[start + 1 :])
        assert rules == {
            "topic write ruche/v1/lyon/door-a/status",
            "topic write ruche/v1/lyon/door-a/desk/+/presence",
            "topic write ruche/v1/lyon/door-a/desk/+/badge",
            "topic write ruche/v1/lyon/door-a/door/+/tap",
            "topic write ruche/v1/lyon/door-a/door/+/event",
            "topic read ruche/v1/lyon/door-a/cmd",
            "topic read ruche/v1/lyon/door-a/allowlist",
            "topic read ruche/v1/lyon/door-a/ack",
        }

    def test_server_reads_and_writes_everything(self):
        acl = render_acl(_accounts()).splitlines()
        assert acl[acl.index("user ruche-server") + 1] == "topic readwrite ruche/#"


class TestPasswd:
    """The password file holds hashes, one line per account, never a clear password."""

    def test_lines(self):
        text = render_passwd(_accounts(("lyon", "a"), ("paris", "a")))
        users = [line.split(":", 1)[0] for line in text.splitlines()]
        assert users == ["ruche-server", "lyon/a", "paris/a"]
        assert PW not in text
        for line in text.splitlines():
            assert verify_password(PW, line.split(":", 1)[1])

    def test_write_config_is_private(self, tmp_path):
        files = write_config(tmp_path / "b", _accounts(("lyon", "a")), BrokerOptions())
        for path in (files.conf, files.passwd, files.acl):
            assert path.stat().st_mode & 0o077 == 0, path
        assert files.data.is_dir()


class TestAccountsFile:
    """A bad accounts file is refused with the field and the reason."""

    def test_loads(self, tmp_path):
        path = tmp_path / "a.toml"
        path.write_text(f'[server]\npassword = "{PW}"\n[[agents]]\nsite = "s"\nid = "a"\n'
                        f'password = "{PW}"\n')  # fmt: skip
        accounts = load_accounts(path)
        assert [a.username for a in accounts.agents] == ["s/a"]

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('[server]\npassword = "change-me"\n', "server.password"),
            (f'[server]\npassword = "{PW}"\n[[agents]]\nsite = "a/b"\nid = "x"\n'
             f'password = "{PW}"\n', "agents.0.site"),
            (f'[server]\npassword = "{PW}"\n[[agents]]\nsite = "s"\nid = "x"\npassword = "{PW}"\n'
             f'[[agents]]\nsite = "s"\nid = "x"\npassword = "{PW}"\n', "listed twice"),
            ("[server\n", "cannot read"),
            (f'[server]\npassword = "{PW}"\nport = 1\n', "server.port: Extra inputs"),
        ],
    )  # fmt: skip
    def test_refused(self, tmp_path, text, expected):
        path = tmp_path / "a.toml"
        path.write_text(text)
        with pytest.raises(AccountsError, match=expected.replace(".", r"\.")):
            load_accounts(path)
