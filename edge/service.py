"""The agent's systemd unit, `ruche-agent.service`, as `ruche edge install` writes it.

>>> unit = agent_unit(ruche=Path("/opt/ruche/bin/ruche"), config=Path("/etc/ruche/agent.toml"),
...                   state_dir=Path("/var/lib/ruche"))
>>> [line for line in unit.render().splitlines() if line.startswith("ExecStart")]
['ExecStart=/opt/ruche/bin/ruche edge run --config %d/agent.toml']
"""

from __future__ import annotations

import grp
from pathlib import Path, PurePosixPath

from ruche.edge.settings import load_settings
from ruche.systemd import (
    Installed,
    Option,
    Section,
    UnitError,
    UnitFile,
    absolute,
    escape,
    exec_line,
    install,
    ruche_executable,
)

UNIT_NAME = "ruche-agent.service"
CREDENTIAL = "agent.toml"
STATE_ROOT = PurePosixPath("/var/lib")
DEVICE_GROUPS = ("gpio", "dialout", "plugdev")
"""Who may open the agent's devices on Raspberry Pi OS: /dev/gpiochip* (gpio), serial
radars and NFC readers on a UART or USB serial port (dialout), USB NFC readers (plugdev,
by nfcpy's udev rule)."""
WATCHDOG_S = 20


def state_directory(state_dir: Path) -> str:
    """`StateDirectory=` for the agent's state_dir, which must be under /var/lib."""
    path = PurePosixPath(state_dir)
    if not path.is_relative_to(STATE_ROOT) or path == STATE_ROOT or ".." in path.parts:
        raise UnitError(
            f"state_dir {state_dir} is not under {STATE_ROOT}: the unit gives the agent a "
            f'state directory of its own there; set state_dir = "{STATE_ROOT}/ruche"'
        )
    return str(path.relative_to(STATE_ROOT))


def agent_unit(
    *,
    ruche: Path,
    config: Path,
    state_dir: Path,
    watchdog_s: int = WATCHDOG_S,
) -> UnitFile:
    """`ruche-agent.service` for the `ruche` at `ruche` and the config file at `config`
    (both absolute). UnitError when `state_dir` is not under /var/lib."""
    state = state_directory(state_dir)
    run = f"{exec_line(str(ruche), 'edge', 'run', '--config')} %d/{CREDENTIAL}"
    unit = (
        Option("Description", "Ruche edge agent: doors, badge readers and desk sensors"),
        Option(
            "Wants", "network-online.target",
            "The link connects at once; it retries anyway, this only spares a first failure.",
        ),
        Option("After", "network-online.target"),
        Option(
            "StartLimitIntervalSec", "0",
            "A door controller never gives up: by default systemd stops restarting a unit\n"
            "after 5 starts in 10 s.",
        ),
    )  # fmt: skip
    service = (
        Option(
            "Type", "notify",
            "READY=1 comes once the link and every badge reader are up: `systemctl start`\n"
            "returns when the doors work, and fails when a reader cannot be opened.",
        ),
        Option(
            "LoadCredential", f"{CREDENTIAL}:{escape(str(config))}",
            "The config holds the broker password and the site key. It stays root's own\n"
            "(0600): systemd hands the service a private copy that only the service can read,\n"
            "so no account, not even the agent's, needs read access to the original.",
        ),
        Option("ExecStart", run, "The private copy of the config, in $CREDENTIALS_DIRECTORY (%d)."),
        Option(
            "DynamicUser", "yes",
            "No account to create: systemd allocates one for as long as the agent runs, and\n"
            "it owns nothing on the machine but the state directory.",
        ),
        Option(
            "SupplementaryGroups", " ".join(DEVICE_GROUPS),
            "The device nodes the agent opens: /dev/gpiochip* (gpio), serial radars and\n"
            "readers (dialout), USB NFC readers (plugdev). Devices are left visible (no\n"
            "PrivateDevices= or DevicePolicy=): their groups guard them, and a reader on\n"
            "another bus than the ones listed would fail without a word.",
        ),
        Option(
            "StateDirectory", escape(state),
            "The durable outbox and the cached allow-list, the only place it writes: kept\n"
            "across restarts, owned by the dynamic user, closed to others (badge tokens).",
        ),
        Option("StateDirectoryMode", "0700"),
        Option(
            "WorkingDirectory", escape(str(state_dir)),
            "lgpio makes its notification pipes in the working directory: / is read-only\n"
            "here, and gpiozero would fall back to a pin driver that cannot work.",
        ),
        Option(
            "WatchdogSec", f"{watchdog_s}s",
            "The agent pings every half period while the link, the readers, the sensors and\n"
            "the door workers run; without a ping systemd aborts it (SIGABRT) and restarts it.",
        ),
        Option(
            "Restart", "always",
            "Whatever ended it (a crash, the watchdog, an exit nobody asked for), a door\n"
            "controller runs again.",
        ),
        Option(
            "RestartSec", "5s",
            "Long enough not to spin on a reader that is unplugged, short enough for a door.",
        ),
        Option(
            "NoNewPrivileges", "yes",
            "Nothing it starts gains privileges (setuid binaries, file capabilities).",
        ),
        Option(
            "CapabilityBoundingSet", "",
            "No capability at all: devices are reached through their groups.",
        ),
        Option(
            "ProtectSystem", "strict",
            "The whole file system read-only but the state directory: a compromised agent\n"
            "plants nothing.",
        ),
        Option("ProtectHome", "yes", "Users' files are none of its business."),
        Option("PrivateTmp", "yes", "A /tmp of its own: no files shared with other services."),
        Option(
            "ProtectKernelTunables", "yes",
            "/proc/sys and /sys read-only: GPIO goes through /dev/gpiochip* (lgpio), never\n"
            "through the legacy /sys/class/gpio.",
        ),
        Option("ProtectKernelModules", "yes", "It loads no kernel module."),
        Option("ProtectKernelLogs", "yes", "It reads no kernel log."),
        Option("ProtectControlGroups", "yes", "It changes no control group."),
        Option("ProtectHostname", "yes", "It renames nothing."),
        Option(
            "RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
            "MQTT over TCP (and nfcpy's udp: reader), the journal and sd_notify over unix\n"
            "sockets, libusb's hotplug monitor over netlink; nothing else.",
        ),
        Option("RestrictNamespaces", "yes", "It makes no namespace, a common escape route."),
        Option("RestrictRealtime", "yes", "No real-time scheduling that could starve the Pi."),
        Option("RestrictSUIDSGID", "yes", "It makes no setuid or setgid file."),
        Option("LockPersonality", "yes", "No other execution domain."),
        Option("SystemCallArchitectures", "native", "Only the Pi's own system call ABI."),
        Option(
            "SystemCallFilter", "@system-service",
            "The system calls of an ordinary service; the rest (mount, kexec, ptrace...)\n"
            "fail with EPERM rather than killing the agent.",
        ),
        Option("SystemCallErrorNumber", "EPERM"),
        Option("UMask", "0077", "What it writes is its own."),
    )  # fmt: skip
    install = (Option("WantedBy", "multi-user.target", "Started at boot."),)
    return UnitFile(
        UNIT_NAME,
        f"Written by `ruche edge install --config {config}`:\nrun it again rather than edit.",
        (Section("Unit", unit), Section("Service", service), Section("Install", install)),
    )


def install_agent(config: Path, root: Path = Path("/")) -> Installed:
    """Write ruche-agent.service under `root` for this installation's `ruche` and the
    config file at `config` (read to check it, and for its state_dir). ConfigError or
    UnitError when it cannot be, OSError when the file cannot be written."""
    config = absolute(config)
    settings = load_settings(config)
    unit = agent_unit(ruche=ruche_executable(), config=config, state_dir=settings.state_dir)
    return Installed(
        files=tuple(install([unit], root)),
        warnings=tuple(
            f"no group {group!r} on this machine: the unit will not start until it exists "
            f"(groupadd --system {group})"
            for group in DEVICE_GROUPS
            if not _group_exists(group)
        ),
        next_steps=("systemctl daemon-reload", f"systemctl enable --now {UNIT_NAME}"),
    )


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True
