"""`ruche edge run|install|read-badge`: the agent on a Pi, its systemd unit, and the UIDs
of badges to enrol. The parsers import nothing but argparse; each handler imports what it
runs (see pyproject's per-file ignores)."""

from __future__ import annotations

import argparse
import queue
import sys
from pathlib import Path

from ruche.commands import CliError, Filler, at_least_one, install_units, positive
from ruche.logs import configure_logging


def _check_paths(config: Path) -> None:
    """The file and the folder the config names, said in one line now rather than as a
    traceback from the agent's start."""
    from ruche.config import check_ca_file, check_folder
    from ruche.edge.settings import ConfigError, load_settings

    settings = load_settings(config)
    if settings.mqtt.ca_file is not None:
        check_ca_file(settings.mqtt.ca_file, ConfigError, what="CA file (mqtt.ca_file)")
    check_folder(settings.state_dir, ConfigError, what="state_dir")


def _run(args: argparse.Namespace) -> int:
    from ruche.edge.nfc import NfcError
    from ruche.edge.settings import ConfigError

    configure_logging(args.log_level)
    try:
        _check_paths(args.config)
        # The agent loads once the checks pass: a refusal is said at once.
        from ruche.edge.run import run_agent

        return run_agent(args.config)
    except (ConfigError, NfcError) as exc:
        raise CliError(str(exc)) from exc


def _install(args: argparse.Namespace) -> int:
    from ruche.edge.service import install_agent

    return install_units(install_agent, args.config, args.root)


def _read_badge(args: argparse.Namespace) -> int:
    """Print the UID of each badge laid on the reader, as `POST /members/{id}/badges`
    takes it (`uid`). The agent must be stopped: one process holds a reader."""
    from ruche.edge.nfc import NfcError, NfcReader

    seen: queue.Queue[bytes] = queue.Queue()
    try:
        reader = NfcReader(device=args.device, reader_id="enrol",
                           on_tap=lambda uid, _reader: seen.put(uid))  # fmt: skip
    except NfcError as exc:
        raise CliError(
            f"{exc} (is the agent running? stop it first: one process per reader)"
        ) from exc
    print(f"lay a badge on the reader ({args.device}); Ctrl-C to stop", file=sys.stderr)
    try:
        for _ in range(args.count):
            try:
                uid = seen.get(timeout=args.timeout)
            except queue.Empty:
                raise CliError(f"no badge within {args.timeout:g} s") from None
            print(uid.hex(), flush=True)
    finally:
        reader.close()
    return 0


def _fill_edge(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="edge_command", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="run the agent")
    run.add_argument("--config", type=Path, required=True, help="the agent's TOML file")
    run.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    run.set_defaults(handler=_run)
    install = actions.add_parser(
        "install", help="write the agent's systemd unit (ruche-agent.service)"
    )
    install.add_argument("--config", type=Path, required=True, help="the agent's TOML file")
    install.add_argument(
        "--root", type=Path, default=Path("/"),
        help="write under this folder instead of / (to prepare an image)",
    )  # fmt: skip
    install.set_defaults(handler=_install)
    read = actions.add_parser(
        "read-badge", help="print the UID of each badge laid on a reader, to enrol it"
    )
    read.add_argument("--device", default="usb",
                      help="nfcpy device: usb, usb:VID:PID, tty:AMA0:pn532 (usb)")  # fmt: skip
    read.add_argument("--count", type=at_least_one, default=1, help="how many badges (1)")
    read.add_argument("--timeout", type=positive, default=60.0,
                      help="seconds to wait for each badge (60)")  # fmt: skip
    read.set_defaults(handler=_read_badge)


COMMANDS: dict[str, Filler] = {"edge": _fill_edge}
