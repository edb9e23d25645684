"""Rendering of mosquitto.conf and the plugin's accounts and roles, without running Mosquitto."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from ruche.broker.accounts import (
    Accounts,
    AccountsError,
    AgentAccount,
    BrokerUsers,
    ServerAccount,
    load_accounts,
)
from ruche.broker.dynsec import SERVER_ROLE, agent_role_name, password_fields, render_dynsec
from ruche.broker.mosquitto_config import (
    BrokerConfigError,
    BrokerOptions,
    TlsOptions,
    find_dynsec_plugin,
    render_accounts,
    render_conf,
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
        plugin=Path("/usr/lib/dynsec.so"),
        dynsec_file=Path("/x/dynamic-security.json"),
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
            "plugin /usr/lib/dynsec.so",
            "plugin_opt_config_file /x/dynamic-security.json",
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


def _acls(role: dict[str, Any]) -> set[tuple[str, str]]:
    assert all(acl["allow"] for acl in role["acls"])
    return {(acl["acltype"], acl["topic"]) for acl in role["acls"]}


def _roles(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {role["rolename"]: role for role in document["roles"]}


class TestAgentRules:
    """Each agent may write only its own events, and subscribe to and read only the four
    topics the server writes for it, each by its literal name."""

    def test_agent_role(self):
        users = BrokerUsers.from_accounts(_accounts(("lyon", "door-a")))
        role = _roles(render_dynsec(users))[agent_role_name("lyon", "door-a")]
        own = "ruche/v1/lyon/door-a"
        assert _acls(role) == {
            ("publishClientSend", f"{own}/status"),
            ("publishClientSend", f"{own}/desk/+/presence"),
            ("publishClientSend", f"{own}/desk/+/badge"),
            ("publishClientSend", f"{own}/door/+/tap"),
            ("publishClientSend", f"{own}/door/+/event"),
            *((kind, f"{own}/{channel}")
              for channel in ("cmd", "allowlist", "ack", "config")
              for kind in ("subscribeLiteral", "publishClientReceive")),
        }  # fmt: skip

    def test_agent_is_bound_to_its_client_id(self):
        users = BrokerUsers.from_accounts(_accounts(("lyon", "door-a"), ("lyon", "door-b")))
        clients = {c["username"]: c for c in render_dynsec(users)["clients"]}
        assert clients["lyon/door-a"]["clientid"] == "lyon/door-a"
        assert clients["lyon/door-a"]["roles"] == [{"rolename": agent_role_name("lyon", "door-a")}]
        assert "clientid" not in clients["ruche-server"], "the server's workers connect as many"

    def test_nothing_is_allowed_by_default(self):
        document = render_dynsec(BrokerUsers.from_accounts(_accounts()))
        assert document["defaultACLAccess"] == {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        }

    def test_server_role(self):
        role = _roles(render_dynsec(BrokerUsers.from_accounts(_accounts())))[SERVER_ROLE]
        assert {("subscribePattern", "ruche/#"), ("subscribePattern", "$share/+/ruche/#"),
                ("publishClientSend", "ruche/#"), ("publishClientReceive", "ruche/#"),
                ("publishClientSend", "$CONTROL/dynamic-security/v1")} <= _acls(role)  # fmt: skip


class TestAccountsDocument:
    """The plugin's file holds hashes, one client per account, never a clear password."""

    def test_clients(self):
        text = render_accounts(_accounts(("lyon", "a"), ("paris", "a")))
        assert PW not in text
        clients = json.loads(text)["clients"]
        assert [c["username"] for c in clients] == ["ruche-server", "lyon/a", "paris/a"]
        for client in clients:
            entry = f"$7${client['iterations']}${client['salt']}${client['password']}"
            assert verify_password(PW, entry)
            assert len(base64.b64decode(client["salt"])) == 12, "the plugin wants 12 bytes"
            assert len(base64.b64decode(client["password"])) == 64, "a SHA-512 digest"

    def test_password_fields_refuse_other_hashes(self):
        with pytest.raises(ValueError, match="not a Mosquitto"):
            password_fields("$6$a$b")

    def test_write_config_is_private(self, tmp_path):
        files = write_config(tmp_path / "b", _accounts(("lyon", "a")), BrokerOptions())
        for path in (files.conf, files.dynsec):
            assert path.stat().st_mode & 0o077 == 0, path
        assert files.data.is_dir()

    def test_plugin_is_found_where_debian_puts_it(self):
        assert find_dynsec_plugin().is_file()

    def test_missing_plugin_is_a_sentence(self, tmp_path):
        with pytest.raises(BrokerConfigError, match="install the Debian package 'mosquitto'"):
            find_dynsec_plugin((str(tmp_path),))


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
