"""The server's systemd units, as `ruche server install` writes them: `ruche-server.service`,
and a drop-in for Debian's Mosquitto, `mosquitto.service.d/ruche.conf`, that runs it on the
configuration `ruche server init` generated beside the server's (`<dir>/mosquitto/`).

>>> conf = "plugin_opt_config_file /var/lib/ruche/mosquitto/dynamic-security.json\\n"
>>> mosquitto_writes(conf)
(PosixPath('/var/lib/ruche/mosquitto'),)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from ruche.server.settings import ServerSettings, load_server_settings
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
    path_list,
    ruche_executable,
)

SERVER_UNIT = "ruche-server.service"
MOSQUITTO_UNIT = "mosquitto.service"
MOSQUITTO_DROPIN = f"{MOSQUITTO_UNIT}.d/ruche.conf"
MOSQUITTO = Path("/usr/sbin/mosquitto")
"""Where Debian's package puts the broker."""
CREDENTIAL = "server.toml"
USER = "ruche"
"""The system account the server runs as; `ruche server install` says how to make it."""
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def mosquitto_conf(config: Path) -> Path:
    """Mosquitto's configuration for the server whose config file is `config`."""
    return config.parent / "mosquitto" / "mosquitto.conf"


def mosquitto_writes(conf: str) -> tuple[Path, ...]:
    """The folders Mosquitto writes, as the text of its configuration names them: the one
    holding the dynamic security plugin's JSON (the plugin writes a new file and renames it
    over the old) and the persistence folder."""
    found: list[Path] = []
    for line in conf.splitlines():
        key, _, value = line.strip().partition(" ")
        value = value.strip()
        if not value:
            continue
        # Mosquitto reads a relative path from its working directory, / under systemd.
        if key == "plugin_opt_config_file":
            found.append((Path("/") / value).parent)
        elif key == "persistence_location":
            found.append(Path("/") / value)
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True, kw_only=True)
class ServerFiles:
    """What the units name on the machine, worked out from the server's settings."""

    workdir: Path
    """The config's folder: where relative paths in server.toml lead."""
    writes: tuple[Path, ...]
    """The SQLite database's folder (its journal and lock file sit beside it) and the
    InfluxDB spool, absolute."""
    database: Path | None
    local_broker: bool
    http_port: int

    @classmethod
    def of(cls, config: Path, settings: ServerSettings) -> ServerFiles:
        workdir = config.parent
        database = _sqlite_file(settings.database_url, workdir)
        writes = [] if database is None else [database.parent]
        if settings.influx is not None:
            writes.append(workdir / settings.influx.spool_dir)
        return cls(
            workdir=workdir,
            writes=outermost(writes),
            database=database,
            local_broker=settings.mqtt.host in _LOOPBACK,
            http_port=settings.http.port,
        )


def _sqlite_file(url: str, workdir: Path) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return workdir / parsed.database


def server_unit(*, ruche: Path, config: Path, files: ServerFiles) -> UnitFile:
    """`ruche-server.service` for the `ruche` at `ruche` and the config file at `config`
    (both absolute)."""
    run = f"{exec_line(str(ruche), 'server', 'run', '--config')} %d/{CREDENTIAL}"
    broker = (
        (Option("Wants", MOSQUITTO_UNIT, "The broker of server.toml runs on this machine."),)
        if files.local_broker
        else ()
    )
    unit = (
        Option("Description", "Ruche server: door decisions, occupancy, billing, REST API"),
        *broker,
        Option("Wants", "network-online.target"),
        Option(
            "After", f"network-online.target {MOSQUITTO_UNIT} postgresql.service",
            "Mosquitto and PostgreSQL start first when they run here; ordering only, so a\n"
            "broker or a database on another machine does as well.",
        ),
        Option(
            "StartLimitIntervalSec", "0",
            "The doors ask it: never stop restarting (by default systemd gives up after 5\n"
            "starts in 10 s).",
        ),
    )  # fmt: skip
    port = (
        (
            Option(
                "AmbientCapabilities", "CAP_NET_BIND_SERVICE",
                f"Port {files.http_port} is below 1024: binding it is the one capability kept.",
            ),
            Option("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        )
        if files.http_port < 1024
        else (Option("CapabilityBoundingSet", "", "No capability at all."),)
    )  # fmt: skip
    writes = (
        (
            Option(
                "ReadWritePaths", path_list(files.writes),
                "The SQLite database's folder (its journal and lock file sit beside it) and the\n"
                "InfluxDB spool: the only places it writes. Each must exist before it starts.",
            ),
        )
        if files.writes
        else ()
    )  # fmt: skip
    service = (
        Option(
            "Type", "exec",
            "`ruche server run` does not speak sd_notify: exec at least fails the start when\n"
            "the program cannot be run.",
        ),
        Option(
            "LoadCredential", f"{CREDENTIAL}:{escape(str(config))}",
            "server.toml holds the database URL, the broker password and tokens. It stays\n"
            "root's own (0600): systemd hands the service a private copy that only the service\n"
            "can read, rather than making the file readable by a group.",
        ),
        Option("ExecStart", run, "The private copy of the config, in $CREDENTIALS_DIRECTORY (%d)."),
        Option(
            "User", USER,
            "An account of its own, not a dynamic one: the database's folder may be shared\n"
            "with Mosquitto's, which systemd's private state directories would close, and\n"
            "`ruche admin` reaches the same SQLite file as this user.",
        ),
        Option("Group", USER),
        Option(
            "WorkingDirectory", escape(str(files.workdir)),
            "Relative paths in server.toml (a SQLite file, the spool) lead beside it.",
        ),
        Option("Restart", "always", "Whatever ended it, the doors need it back."),
        Option("RestartSec", "5s", "Not spinning while the database or the broker is away."),
        Option("NoNewPrivileges", "yes", "Nothing it starts gains privileges."),
        *port,
        Option(
            "ProtectSystem", "strict",
            "The whole file system read-only but the paths below: a compromised server\n"
            "plants nothing.",
        ),
        *writes,
        Option("ProtectHome", "yes", "Users' files are none of its business."),
        Option("PrivateTmp", "yes", "A /tmp of its own."),
        Option("PrivateDevices", "yes", "No device but /dev/null and the like."),
        Option("ProtectKernelTunables", "yes", "/proc/sys and /sys read-only."),
        Option("ProtectKernelModules", "yes", "It loads no kernel module."),
        Option("ProtectKernelLogs", "yes", "It reads no kernel log."),
        Option("ProtectControlGroups", "yes", "It changes no control group."),
        Option("ProtectClock", "yes", "It sets no clock."),
        Option("ProtectHostname", "yes", "It sets no host name."),
        Option(
            "RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6",
            "HTTP, MQTT, InfluxDB and PostgreSQL over TCP or unix sockets; nothing else.",
        ),
        Option("RestrictNamespaces", "yes", "It makes no namespace, a common escape route."),
        Option("RestrictRealtime", "yes", "No real-time scheduling."),
        Option("RestrictSUIDSGID", "yes", "It makes no setuid or setgid file."),
        Option("LockPersonality", "yes", "No other execution domain."),
        Option("SystemCallArchitectures", "native", "Only the machine's own system call ABI."),
        Option(
            "SystemCallFilter", "@system-service",
            "The system calls of an ordinary service; the rest fail with EPERM.",
        ),
        Option("SystemCallErrorNumber", "EPERM"),
        Option("UMask", "0027", "The database and the spool are not for every account."),
    )  # fmt: skip
    install = (Option("WantedBy", "multi-user.target", "Started at boot."),)
    return UnitFile(
        SERVER_UNIT,
        f"Written by `ruche server install --config {config}`:\nrun it again rather than edit.",
        (Section("Unit", unit), Section("Service", service), Section("Install", install)),
    )


def mosquitto_dropin(*, config: Path, conf: Path, writes: tuple[Path, ...]) -> UnitFile:
    """The drop-in that runs Debian's Mosquitto on `conf`, writing only `writes`."""
    kept = (
        (
            Option(
                "ReadWritePaths", path_list(writes),
                "The dynamic security plugin rewrites its JSON (a new file renamed over the\n"
                "old) and persistence saves its snapshot: their folders stay writable.",
            ),
        )
        if writes
        else ()
    )  # fmt: skip
    service = (
        Option(
            "ExecStart", "",
            "Debian's unit runs /etc/mosquitto/mosquitto.conf; Ruche's is generated beside\n"
            "the server's config. The empty line clears Debian's command: a service has one.",
        ),
        Option("ExecStart", exec_line(str(MOSQUITTO), "-c", str(conf))),
        Option(
            "ProtectSystem", "full",
            "/usr, /boot and /etc read-only (not strict: Debian's ExecStartPre makes its\n"
            "folders in /run and /var/log).",
        ),
        *kept,
        Option("NoNewPrivileges", "yes", "It drops to its own user and gains nothing back."),
        Option("PrivateTmp", "yes", "A /tmp of its own."),
        Option("ProtectKernelTunables", "yes", "/proc/sys and /sys read-only."),
        Option("ProtectKernelModules", "yes", "It loads no kernel module."),
        Option("ProtectControlGroups", "yes", "It changes no control group."),
    )  # fmt: skip
    return UnitFile(
        MOSQUITTO_DROPIN,
        f"Written by `ruche server install --config {config}`:\nrun it again rather than edit.",
        (Section("Service", service),),
    )


def read_mosquitto_conf(conf: Path) -> str:
    """The text of Mosquitto's configuration, or UnitError saying what to do."""
    try:
        return conf.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UnitError(
            f"{conf}: no such file: `ruche server init` writes Mosquitto's configuration there"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UnitError(f"{conf}: cannot read Mosquitto's configuration: {reason}") from None


def install_server(config: Path, root: Path = Path("/")) -> Installed:
    """Write ruche-server.service and Mosquitto's drop-in under `root`, for this
    installation's `ruche`, the server's config file at `config` and Mosquitto's
    configuration beside it. ServerConfigError or UnitError when they cannot be, OSError
    when a file cannot be written."""
    config = absolute(config)
    settings = load_server_settings(config)
    conf = mosquitto_conf(config)
    conf_text = read_mosquitto_conf(conf)
    broker = outermost(mosquitto_writes(conf_text))
    files = ServerFiles.of(config, settings)
    units = (
        server_unit(ruche=ruche_executable(), config=config, files=files),
        mosquitto_dropin(config=config, conf=conf, writes=broker),
    )
    missing = [
        path
        for path in dict.fromkeys((*files.writes, *broker))
        if not (root / path.relative_to("/")).is_dir()
    ]
    shared = [path for path in files.writes if path in broker]
    return Installed(
        files=tuple(install(units, root)),
        warnings=(
            *(
                f"{path} does not exist: make it before starting (systemd refuses to start "
                "a unit whose ReadWritePaths= is missing)"
                for path in missing
            ),
            *(
                f"{path} is written both by the server and by Mosquitto: give each a folder "
                "of its own, or make it writable by both accounts"
                for path in shared
            ),
        ),
        next_steps=(
            f"id -u {USER} >/dev/null 2>&1 || useradd --system --user-group --home-dir / "
            f"--shell /usr/sbin/nologin {USER}",
            *_ownership(files, broker, mosquitto_user(conf_text), shared),
            *_key_readable(conf_text),
            "systemctl daemon-reload",
            f"systemctl restart {MOSQUITTO_UNIT}",
            f"systemctl enable --now {SERVER_UNIT}",
        ),
    )


def _ownership(
    files: ServerFiles, broker: tuple[Path, ...], broker_user: str, shared: list[Path]
) -> list[str]:
    """The chown and chmod lines that give each account what it writes (a folder both
    write is left to the person: it is named in a warning)."""
    own = [path for path in files.writes if path not in shared]
    # A server folder holding Mosquitto's: Mosquitto's group may pass through it.
    holders = [path for path in own if any(b.is_relative_to(path) for b in broker)]
    plain = [path for path in own if path not in holders]
    if files.database is not None and files.database.parent not in shared:
        plain.append(files.database)
    steps = []
    if plain:
        steps.append(f"chown {USER}:{USER} {' '.join(map(str, plain))}")
    if holders:
        listed = " ".join(map(str, holders))
        steps.append(f"chown {USER}:{broker_user} {listed} && chmod 0750 {listed}")
    mosquitto_own = [path for path in broker if path not in shared]
    if mosquitto_own and broker_user != "root":
        steps.append(f"chown -R {broker_user}: {' '.join(map(str, mosquitto_own))}")
    return steps


def _key_readable(conf: str) -> list[str]:
    """Mosquitto drops to its own account before it reads its TLS key: the key's group."""
    user = mosquitto_user(conf)
    keys = [line.split(None, 1)[1].strip() for line in conf.splitlines()
            if line.startswith("keyfile ") and len(line.split(None, 1)) == 2]  # fmt: skip
    if user == "root" or not keys:
        return []
    listed = " ".join(keys)
    return [f"chgrp {user} {listed} && chmod 0640 {listed}"]


def mosquitto_user(conf: str) -> str:
    """The account Mosquitto runs as once started: its configuration's `user`, or the
    one Debian's package makes."""
    for line in conf.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "user" and value.strip():
            return value.strip()
    return "mosquitto"


def outermost(paths: Iterable[Path]) -> tuple[Path, ...]:
    """`paths` without those inside another of them: a folder made writable is writable
    all the way down."""
    unique = list(dict.fromkeys(paths))
    return tuple(p for p in unique if not any(p != q and p.is_relative_to(q) for q in unique))
