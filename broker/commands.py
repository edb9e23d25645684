"""`ruche broker config`: Mosquitto's configuration for the accounts of a TOML file.

`ruche server broker-config` writes the same from the server's registry; both take the
listener options `add_listener_options` defines. The parsers import nothing but argparse;
each handler imports what it runs (see pyproject's per-file ignores).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ruche.commands import CliError, Filler

if TYPE_CHECKING:
    from ruche.broker.accounts import Accounts, BrokerUsers


def add_listener_options(parser: argparse.ArgumentParser) -> None:
    """Where to write, and how the broker listens."""
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    parser.add_argument("--port", type=int, default=1883, help="plain listener port (1883)")
    parser.add_argument(
        "--bind", default="127.0.0.1", help="plain listener address (loopback: clear passwords)"
    )
    parser.add_argument("--tls-cert", type=Path, help="certificate for a TLS listener")
    parser.add_argument("--tls-key", type=Path, help="private key for the TLS listener")
    parser.add_argument("--tls-ca", type=Path, help="CA file for client certificates")
    parser.add_argument("--tls-port", type=int, default=8883, help="TLS listener port (8883)")
    parser.add_argument(
        "--tls-bind", default="0.0.0.0",  # noqa: S104 - agents come over the site network
        help="TLS listener address (default: every interface)",
    )  # fmt: skip
    parser.add_argument("--run-as", help="user Mosquitto keeps when started as root")
    parser.add_argument(
        "--dynsec-plugin", type=Path,
        help="path of mosquitto_dynamic_security.so on the broker (default: found here)",
    )  # fmt: skip


def write_for(accounts: Accounts | BrokerUsers, args: argparse.Namespace) -> int:
    """Write the configuration `add_listener_options`' arguments ask for, and say so."""
    from ruche.broker.mosquitto_config import (
        BrokerConfigError,
        BrokerOptions,
        TlsOptions,
        write_config,
    )
    from ruche.config import check_folder

    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise CliError("--tls-cert and --tls-key go together")
        for path in (args.tls_cert, args.tls_key, args.tls_ca):
            if path is not None and not path.is_file():
                raise CliError(f"{path}: {_not_a_file(path)}")
        tls = TlsOptions(
            certfile=args.tls_cert.resolve(),
            keyfile=args.tls_key.resolve(),
            cafile=args.tls_ca.resolve() if args.tls_ca else None,
            port=args.tls_port,
            bind=args.tls_bind,
        )
    if args.dynsec_plugin is not None and not args.dynsec_plugin.is_file():
        raise CliError(f"{args.dynsec_plugin}: {_not_a_file(args.dynsec_plugin)}")
    options = BrokerOptions(
        port=args.port, bind=args.bind, tls=tls, run_as=args.run_as,
        dynsec_plugin=args.dynsec_plugin,
    )  # fmt: skip
    check_folder(args.out, CliError, what="--out")
    try:
        files = write_config(args.out, accounts, options)
    except BrokerConfigError as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"{exc.filename or args.out}: cannot write: {exc.strerror}") from exc
    print(f"wrote {files.conf} and {files.dynsec} for {len(accounts.agents)} agents")
    print(f"run it with: mosquitto -c {files.conf}")
    print("a running Mosquitto reads these only when it starts: restart it to apply them")
    return 0


def _not_a_file(path: Path) -> str:
    return "is a directory: give the file's path" if path.is_dir() else "no such file"


def _config(args: argparse.Namespace) -> int:
    from ruche.broker.accounts import AccountsError, load_accounts

    try:
        accounts = load_accounts(args.accounts)
    except AccountsError as exc:
        raise CliError(str(exc)) from exc
    return write_for(accounts, args)


def _fill_broker(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="broker_command", required=True, metavar="ACTION")
    config = actions.add_parser(
        "config",
        help="write mosquitto.conf and the accounts (hashed passwords, per-agent rules)",
        description="Accounts from a TOML file; `ruche server broker-config` takes them "
        "from the server's registry instead.",
    )
    config.add_argument(
        "--accounts", type=Path, required=True, help="TOML file with the server and agent accounts"
    )
    add_listener_options(config)
    config.set_defaults(handler=_config)


COMMANDS: dict[str, Filler] = {"broker": _fill_broker}
