"""The systemd units Ruche writes: absolute paths, the reasons beside the options, the
Mosquitto drop-in's command, and installs that write only what changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from ruche.edge.service import agent_unit, install_agent
from ruche.server.deploy.units import (
    ServerFiles,
    install_server,
    mosquitto_dropin,
    mosquitto_writes,
    server_unit,
)
from ruche.server.settings import ServerSettings
from ruche.systemd import (
    UNIT_DIR,
    Option,
    Section,
    UnitError,
    UnitFile,
    exec_line,
    install,
    path_list,
    ruche_executable,
)

RUCHE = Path("/opt/ruche/bin/ruche")


def options(unit: UnitFile) -> dict[str, list[str]]:
    """Every `Key=value` of the rendered text, by key, in order."""
    found: dict[str, list[str]] = {}
    for line in unit.render().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def agent_toml(path: Path, *, state_dir: str = "/var/lib/ruche") -> Path:
    path.write_text(
        f'site = "lyon"\nagent = "door-a"\nsite_key = "{"00" * 16}"\n'
        f'state_dir = "{state_dir}"\ngpio = "mock"\n\n[mqtt]\nusername = "lyon/door-a"\n'
        'password = "a-long-real-password"\n'
    )
    return path


def server_layout(folder: Path, server_toml: str = "") -> Path:
    """`<folder>/server.toml` and a Mosquitto configuration beside it, as init lays out."""
    (folder / "mosquitto").mkdir(parents=True)
    (folder / "mosquitto" / "mosquitto.conf").write_text(
        "plugin /usr/lib/mosquitto_dynamic_security.so\n"
        f"plugin_opt_config_file {folder}/state/mosquitto/dynamic-security.json\n"
        f"persistence_location {folder}/state/mosquitto/data/\n"
        f"keyfile {folder}/tls/broker.key\n"
    )
    config = folder / "server.toml"
    config.write_text(server_toml or '[mqtt]\npassword = "a-long-real-password"\n')
    return config


class TestRendering:
    """A unit renders each option under the comment saying why, values escaped."""

    def test_comment_above_each_option(self):
        unit = UnitFile("x.service", "Head.", (Section("Service", (
            Option("Type", "exec", "Why exec."),
            Option("ExecStart", exec_line("/bin/true")),
        )),))  # fmt: skip
        assert (
            unit.render() == "# Head.\n\n[Service]\n# Why exec.\nType=exec\nExecStart=/bin/true\n"
        )

    def test_exec_words_escaped(self):
        line = exec_line("/opt/my ruche/bin/ruche", "100%", "$HOME", 'say "hi"')
        assert line == '"/opt/my ruche/bin/ruche" 100%% $$HOME "say \\"hi\\""'

    def test_paths_quoted_not_dollar_escaped(self):
        assert path_list([Path("/var/lib/a b"), Path("/srv/$x%")]) == '"/var/lib/a b" /srv/$x%%'

    def test_a_relative_program_or_a_line_break_is_refused(self):
        with pytest.raises(UnitError, match="absolute"):
            exec_line("ruche")
        with pytest.raises(UnitError, match="line break"):
            exec_line("/bin/true", "a\nb")


class TestAgentUnit:
    """ruche-agent.service: notify with a watchdog, the config as a credential."""

    def test_absolute_paths_and_watchdog(self):
        unit = agent_unit(ruche=RUCHE, config=Path("/etc/ruche/agent.toml"),
                          state_dir=Path("/var/lib/ruche/agent"))  # fmt: skip
        found = options(unit)
        assert found["ExecStart"] == ["/opt/ruche/bin/ruche edge run --config %d/agent.toml"]
        assert found["LoadCredential"] == ["agent.toml:/etc/ruche/agent.toml"]
        assert found["Type"] == ["notify"]
        assert found["WatchdogSec"] == ["20s"]
        assert found["StateDirectory"] == ["ruche/agent"]
        assert found["WorkingDirectory"] == ["/var/lib/ruche/agent"], "lgpio writes there"
        assert found["SupplementaryGroups"] == ["gpio dialout plugdev"]
        assert "PrivateDevices" not in found
        assert found["Restart"] == ["always"]

    @pytest.mark.parametrize("state_dir", ["/srv/ruche", "/var/lib", "state", "/var/lib/../x"])
    def test_state_outside_var_lib_is_refused(self, state_dir):
        with pytest.raises(UnitError, match="not under /var/lib"):
            agent_unit(ruche=RUCHE, config=Path("/etc/a.toml"), state_dir=Path(state_dir))


class TestServerUnits:
    """ruche-server.service and the drop-in that runs Mosquitto on Ruche's configuration."""

    def settings(self, **fields: object) -> ServerSettings:
        return ServerSettings(**{"mqtt": {"password": "a-long-real-password"}, **fields})

    def test_dropin_clears_and_overrides_execstart(self):
        dropin = mosquitto_dropin(
            config=Path("/etc/ruche/server.toml"),
            conf=Path("/etc/ruche/mosquitto/mosquitto.conf"),
            writes=(Path("/var/lib/ruche/mosquitto"),),
        )
        assert dropin.name == "mosquitto.service.d/ruche.conf"
        found = options(dropin)
        assert found["ExecStart"] == [
            "",
            "/usr/sbin/mosquitto -c /etc/ruche/mosquitto/mosquitto.conf",
        ]
        assert found["ReadWritePaths"] == ["/var/lib/ruche/mosquitto"]

    def test_mosquitto_writes_its_json_folder_and_persistence(self):
        conf = (
            "# plugin_opt_config_file /nowhere/x.json\n"
            "plugin_opt_config_file /var/lib/ruche/mosquitto/dynamic-security.json\n"
            "persistence_location /var/lib/ruche/mosquitto/data/\n"
        )
        assert mosquitto_writes(conf) == (
            Path("/var/lib/ruche/mosquitto"),
            Path("/var/lib/ruche/mosquitto/data"),
        )

    def test_relative_database_and_spool_lead_beside_the_config(self):
        config = Path("/etc/ruche/server.toml")
        files = ServerFiles.of(config, self.settings(
            database_url="sqlite:///state/ruche.db", influx={"spool_dir": "/var/spool/ruche"},
        ))  # fmt: skip
        unit = server_unit(ruche=RUCHE, config=config, files=files)
        found = options(unit)
        assert found["ExecStart"] == ["/opt/ruche/bin/ruche server run --config %d/server.toml"]
        assert found["LoadCredential"] == ["server.toml:/etc/ruche/server.toml"]
        assert found["WorkingDirectory"] == ["/etc/ruche"]
        assert found["ReadWritePaths"] == ["/etc/ruche/state /var/spool/ruche"]
        assert found["Wants"] == ["mosquitto.service", "network-online.target"]
        assert found["CapabilityBoundingSet"] == [""]

    def test_low_port_keeps_one_capability_and_remote_broker_is_not_wanted(self):
        config = Path("/etc/ruche/server.toml")
        files = ServerFiles.of(config, self.settings(
            database_url="postgresql+psycopg://ruche@db/ruche", http={"port": 443},
            mqtt={"host": "broker.lan", "password": "a-long-real-password"},
        ))  # fmt: skip
        found = options(server_unit(ruche=RUCHE, config=config, files=files))
        assert found["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
        assert found["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
        assert found["Wants"] == ["network-online.target"]
        assert "ReadWritePaths" not in found


class TestInstall:
    """An install writes each file once; run again, it writes nothing."""

    def test_second_install_writes_nothing(self, tmp_path):
        unit = UnitFile("x.service", "Head.", (Section("Service", (Option("Type", "exec"),)),))
        assert install([unit], tmp_path) == [(tmp_path / UNIT_DIR / "x.service", "written")]
        path = tmp_path / UNIT_DIR / "x.service"
        before = path.stat().st_mtime_ns
        assert install([unit], tmp_path) == [(path, "unchanged")]
        assert path.stat().st_mtime_ns == before
        assert oct(path.stat().st_mode & 0o777) == "0o644"
        path.write_text("edited by hand\n")
        assert install([unit], tmp_path) == [(path, "written")]
        assert path.read_text() == unit.render()

    def test_agent_install_is_idempotent(self, tmp_path):
        config = agent_toml(tmp_path / "agent.toml")
        root = tmp_path / "root"
        first = install_agent(config, root)
        unit = root / UNIT_DIR / "ruche-agent.service"
        assert first.files == ((unit, "written"),)
        assert f"ExecStart={ruche_executable()} edge run" in unit.read_text()
        assert install_agent(config, root).files == ((unit, "unchanged"),)
        assert first.next_steps[-1] == "systemctl enable --now ruche-agent.service"

    def test_server_install_is_idempotent(self, tmp_path):
        config = server_layout(tmp_path / "etc")
        root = tmp_path / "root"
        first = install_server(config, root)
        written = [path.relative_to(root / UNIT_DIR) for path, _ in first.files]
        assert written == [Path("ruche-server.service"), Path("mosquitto.service.d/ruche.conf")]
        assert {outcome for _, outcome in first.files} == {"written"}
        again = install_server(config, root)
        assert {outcome for _, outcome in again.files} == {"unchanged"}
        dropin = (root / UNIT_DIR / "mosquitto.service.d/ruche.conf").read_text()
        assert (
            f"ExecStart=/usr/sbin/mosquitto -c {config.parent}/mosquitto/mosquitto.conf\n" in dropin
        )

    def test_init_layout_gives_each_account_its_folders(self, tmp_path):
        """The database, the spool and Mosquitto's folder in one state folder, as `ruche
        server init` lays them out: the server owns the state folder, Mosquitto its own in
        it and may pass through."""
        state = tmp_path / "etc" / "state"
        config = server_layout(
            tmp_path / "etc",
            f'database_url = "sqlite:///{state}/ruche.db"\n'
            '[mqtt]\npassword = "a-long-real-password"\n'
            f'[influx]\nspool_dir = "{state}/influx-spool"\n',
        )
        root = tmp_path / "root"
        done = install_server(config, root)
        server = (root / UNIT_DIR / "ruche-server.service").read_text()
        dropin = (root / UNIT_DIR / "mosquitto.service.d/ruche.conf").read_text()
        assert f"ReadWritePaths={state}\n" in server
        assert f"ReadWritePaths={state}/mosquitto\n" in dropin
        assert f"chown ruche:ruche {state}/ruche.db" in done.next_steps
        assert f"chown ruche:mosquitto {state} && chmod 0750 {state}" in done.next_steps
        assert f"chown -R mosquitto: {state}/mosquitto" in done.next_steps
        key = tmp_path / "etc" / "tls" / "broker.key"
        assert f"chgrp mosquitto {key} && chmod 0640 {key}" in done.next_steps, (
            "Mosquitto reads its key after dropping root"
        )
        assert not any("both by the server" in w for w in done.warnings)

    def test_server_install_without_mosquitto_conf_says_so(self, tmp_path):
        config = server_layout(tmp_path / "etc")
        (config.parent / "mosquitto" / "mosquitto.conf").unlink()
        with pytest.raises(UnitError, match="ruche server init"):
            install_server(config, tmp_path / "root")

    def test_a_folder_shared_with_mosquitto_is_named(self, tmp_path):
        state = tmp_path / "etc" / "state" / "mosquitto"
        config = server_layout(
            tmp_path / "etc",
            f'database_url = "sqlite:///{state}/ruche.db"\n'
            '[mqtt]\npassword = "a-long-real-password"\n',
        )
        done = install_server(config, tmp_path / "root")
        assert any("both by the server and by Mosquitto" in w for w in done.warnings)
        assert not any(str(state) + " " in step for step in done.next_steps if "chown" in step)
