"""The `ruche` command. Subcommands import their modules lazily, so the Pi agent never loads
the server's dependencies."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ruche import __version__

Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A problem the person at the terminal can fix; printed without a traceback."""


def _broker_config(args: argparse.Namespace) -> int:
    from ruche.broker.accounts import AccountsError, load_accounts  # noqa: PLC0415
    from ruche.broker.mosquitto_config import (  # noqa: PLC0415
        BrokerOptions,
        TlsOptions,
        write_config,
    )

    try:
        accounts = load_accounts(args.accounts)
    except AccountsError as exc:
        raise CliError(str(exc)) from exc
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise CliError("--tls-cert and --tls-key go together")
        for path in (args.tls_cert, args.tls_key, args.tls_ca):
            if path is not None and not path.is_file():
                raise CliError(f"{path}: no such file")
        tls = TlsOptions(
            certfile=args.tls_cert.resolve(),
            keyfile=args.tls_key.resolve(),
            cafile=args.tls_ca.resolve() if args.tls_ca else None,
            port=args.tls_port,
        )
    options = BrokerOptions(port=args.port, bind=args.bind, tls=tls, run_as=args.run_as)
    files = write_config(args.out, accounts, options)
    print(f"wrote {files.conf}, {files.passwd} and {files.acl} for {len(accounts.agents)} agents")
    print(f"run it with: mosquitto -c {files.conf}")
    return 0


def _edge_run(args: argparse.Namespace) -> int:
    from ruche.edge.nfc import NfcError  # noqa: PLC0415
    from ruche.edge.run import run_agent  # noqa: PLC0415
    from ruche.edge.settings import ConfigError  # noqa: PLC0415
    from ruche.logs import configure_logging  # noqa: PLC0415

    configure_logging(args.log_level)
    try:
        return run_agent(args.config)
    except (ConfigError, NfcError) as exc:
        raise CliError(str(exc)) from exc


def _sim_run(args: argparse.Namespace) -> int:
    from ruche.sim.scenario import ScenarioError, ScenarioPlayer, load_scenario  # noqa: PLC0415

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        raise CliError(str(exc)) from exc
    directory = (args.dir or Path.cwd()).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    with ScenarioPlayer(scenario, directory=directory) as player:
        for desk, link in player.radar_links().items():
            print(f'radar {desk}: serial = "{link}"')
        for badge in scenario.badges:
            print(f'badges: reader = "{badge.device}" ({len(badge.taps)} taps)')
        print(f"playing {scenario.duration:g} s at x{scenario.speed:g}; Ctrl-C stops", flush=True)
        player.wait()
    print("done")
    return 0


def _bench_edge(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from ruche.sim.agent_bench import run_agent_bench  # noqa: PLC0415

    if not args.json:
        print(f"running one agent with {args.radars} radars at 10 Hz and an NFC reader "
              f"for {args.seconds:g} s...", flush=True)  # fmt: skip
    result = run_agent_bench(seconds=args.seconds, radars=args.radars)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        for key, value in result.as_dict().items():
            print(f"{key:>14}: {value}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ruche.demo import run_demo  # noqa: PLC0415

    return run_demo(duration=args.duration, directory=args.dir, port=args.port)


def _version(_: argparse.Namespace) -> int:
    print(f"ruche {__version__}")
    return 0


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ruche", description="Desk occupancy and door access control for coworking spaces."
    )
    parser.add_argument("--version", action="version", version=f"ruche {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    broker = commands.add_parser("broker", help="the MQTT broker Ruche configures")
    broker_commands = broker.add_subparsers(dest="broker_command", required=True, metavar="ACTION")
    config = broker_commands.add_parser(
        "config", help="write mosquitto.conf, a hashed password file and an ACL"
    )
    config.add_argument(
        "--accounts", type=Path, required=True, help="TOML file with the server and agent accounts"
    )
    config.add_argument("--out", type=Path, required=True, help="directory to write into")
    config.add_argument("--port", type=int, default=1883, help="plain listener port (1883)")
    config.add_argument(
        "--bind", default="127.0.0.1", help="plain listener address (loopback: clear passwords)"
    )
    config.add_argument("--tls-cert", type=Path, help="certificate for a TLS listener")
    config.add_argument("--tls-key", type=Path, help="private key for the TLS listener")
    config.add_argument("--tls-ca", type=Path, help="CA file for client certificates")
    config.add_argument("--tls-port", type=int, default=8883, help="TLS listener port (8883)")
    config.add_argument("--run-as", help="user Mosquitto keeps when started as root")
    config.set_defaults(handler=_broker_config)

    edge = commands.add_parser("edge", help="the agent on a Raspberry Pi")
    edge_commands = edge.add_subparsers(dest="edge_command", required=True, metavar="ACTION")
    edge_run = edge_commands.add_parser("run", help="run the agent")
    edge_run.add_argument("--config", type=Path, required=True, help="the agent's TOML file")
    edge_run.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    edge_run.set_defaults(handler=_edge_run)

    sim = commands.add_parser("sim", help="the hardware in software")
    sim_commands = sim.add_subparsers(dest="sim_command", required=True, metavar="ACTION")
    sim_run = sim_commands.add_parser(
        "run", help="play a scenario file: radars on ptys, badges over nfcpy UDP"
    )
    sim_run.add_argument("--scenario", type=Path, required=True, help="the scenario TOML file")
    sim_run.add_argument("--dir", type=Path, help="where pty links go (default: here)")
    sim_run.set_defaults(handler=_sim_run)

    bench = commands.add_parser("bench", help="benchmarks on this machine")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    bench_edge = bench_commands.add_parser(
        "edge", help="CPU and memory of one agent with radars at 10 Hz and an NFC reader"
    )
    bench_edge.add_argument("--seconds", type=_positive, default=60.0, help="measure for (60)")
    bench_edge.add_argument("--radars", type=int, default=4, help="radars at 10 Hz (4)")
    bench_edge.add_argument("--json", action="store_true", help="print one JSON object")
    bench_edge.set_defaults(handler=_bench_edge)

    demo = commands.add_parser("demo", help="run Ruche on this machine and show it working")
    demo.add_argument(
        "--duration", type=_positive, help="stop after this many seconds (default: until Ctrl-C)"
    )
    demo.add_argument("--dir", type=Path, help="working directory (default: a temporary one)")
    demo.add_argument("--port", type=int, help="broker port (default: a free one)")
    demo.set_defaults(handler=_demo)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(handler=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except CliError as exc:
        print(f"ruche: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
