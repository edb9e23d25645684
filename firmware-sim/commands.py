"""The simulator's commands: `ruche sim run`, `ruche bench edge|access|ingest|web` and
`ruche demo`.

The parsers import nothing but argparse; each handler imports what it runs (see pyproject's
per-file ignores): the benchmarks and the demo start a broker and a server, so that `ruche sim
run` works with the simulator's extra alone and a missing extra is said as such.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ruche.commands import CliError, Filler, at_least_one, positive, print_result

# --- ruche sim -------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    from ruche.config import check_folder
    from ruche.sim.scenario import ScenarioError, ScenarioPlayer, load_scenario

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        raise CliError(str(exc)) from exc
    directory = (args.dir or Path.cwd()).resolve()
    check_folder(directory, CliError, what="--dir")
    with ScenarioPlayer(scenario, directory=directory) as player:
        for desk, link in player.radar_links().items():
            print(f'radar {desk}: serial = "{link}"')
        for badge in scenario.badges:
            print(f'badges: reader = "{badge.device}" ({len(badge.taps)} taps)')
        print(f"playing {scenario.duration:g} s at x{scenario.speed:g}; Ctrl-C stops", flush=True)
        player.wait()
    print("done")
    return 0


def _fill_sim(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="sim_command", required=True, metavar="ACTION")
    run = actions.add_parser(
        "run", help="play a scenario file: radars on ptys, badges over nfcpy UDP"
    )
    run.add_argument("--scenario", type=Path, required=True, help="the scenario TOML file")
    run.add_argument("--dir", type=Path, help="where pty links go (default: here)")
    run.set_defaults(handler=_run)


# --- ruche bench -----------------------------------------------------------------------


def _bench_edge(args: argparse.Namespace) -> int:
    from ruche.sim.bench.edge import run_agent_bench

    if not args.json:
        print(f"running one agent with {args.radars} radars at 10 Hz and an NFC reader "
              f"for {args.seconds:g} s...", flush=True)  # fmt: skip
    result = run_agent_bench(seconds=args.seconds, radars=args.radars)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print_result(result.as_dict(), width=14)
    return 0


def _bench_ingest(args: argparse.Namespace) -> int:
    from ruche.server.storage.checks import UnusableDatabaseError, check_database
    from ruche.sim.bench.ingest import BenchError, Faults, run_ingest_bench

    for name in ("agents", "desks", "publishers", "workers"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name} must be at least 1")
    if args.database is not None:
        try:
            check_database(args.database, schema=False)  # the bench migrates it
        except UnusableDatabaseError as exc:
            raise CliError(str(exc)) from exc
    try:
        result = run_ingest_bench(
            rate=args.rate,
            seconds=args.seconds,
            agents=args.agents,
            desks_per_agent=args.desks,
            publishers=args.publishers,
            workers=args.workers,
            database_url=args.database,
            faults=Faults(
                influx_down_at=args.influx_down_at,
                influx_down_for=args.influx_down_for,
                kill_worker_at=args.kill_worker_at,
            ),
            progress=not args.json,
        )
    except BenchError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print_result(result.as_dict())
    return 0


def _bench_access(args: argparse.Namespace) -> int:
    from ruche.sim.bench.access import run_access_bench

    if not args.json:
        print(f"starting a broker and a server, then {args.taps} taps from {args.agents} "
              "doors...", flush=True)  # fmt: skip
    result = run_access_bench(
        taps=args.taps, agents=args.agents, oversized_bodies=args.oversized_bodies
    )
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print_result(result.as_dict())
    return 0 if result.wrong_decisions == 0 and result.unanswered == 0 else 1


def _bench_web(args: argparse.Namespace) -> int:
    from ruche.sim.bench.web import BenchError, run_web_bench

    for name in ("desks", "members", "requests"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name} must be at least 1")
    try:
        result = run_web_bench(
            desks=args.desks, members=args.members, requests=args.requests,
            progress=None if args.json else lambda line: print(line, flush=True),
        )  # fmt: skip
    except BenchError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(f"{'who':<8} {'page':<28} {'status':>6} {'p50 ms':>8} {'p95 ms':>8} "
              f"{'max ms':>8} {'bytes':>8}")  # fmt: skip
        for page in result.pages:
            times = [f"{t:8.1f}" if t is not None else f"{'-':>8}"
                     for t in (page.p50_ms, page.p95_ms, page.max_ms)]  # fmt: skip
            print(f"{page.role:<8} {page.path:<28} {page.status:>6} {' '.join(times)} "
                  f"{page.bytes:>8}")  # fmt: skip
        for missing in result.not_served:
            print(f"not served: {missing}")
        print(f"slowest p95: {result.slowest_p95_ms:.1f} ms (target under "
              f"{result.target_p95_ms:.0f} ms); over it or failing: "
              f"{', '.join(result.failed) or 'none'}")  # fmt: skip
    return 0 if not result.failed else 1


def _fill_bench(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    edge = actions.add_parser(
        "edge", help="CPU and memory of one agent with radars at 10 Hz and an NFC reader"
    )
    edge.add_argument("--seconds", type=positive, default=60.0, help="measure for (60)")
    edge.add_argument("--radars", type=int, default=4, help="radars at 10 Hz (4)")
    edge.add_argument("--json", action="store_true", help="print one JSON object")
    edge.set_defaults(handler=_bench_edge)
    access = actions.add_parser(
        "access", help="tap-to-unlock latency through a real broker and server"
    )
    access.add_argument("--taps", type=int, default=5000, help="how many taps (5000)")
    access.add_argument("--agents", type=int, default=4, help="doors tapping at once (4)")
    access.add_argument(
        "--oversized-bodies", type=int, default=0, metavar="N",
        help="meanwhile, N unauthenticated 32 MB requests to the API (0)",
    )  # fmt: skip
    access.add_argument("--json", action="store_true", help="print one JSON object")
    access.set_defaults(handler=_bench_access)
    ingest = actions.add_parser(
        "ingest", help="presence events into SQL and InfluxDB through a real broker and server"
    )
    ingest.add_argument("--rate", type=positive, default=10_000, help="events per second (10000)")
    ingest.add_argument("--seconds", type=positive, default=60.0, help="publish for (60)")
    ingest.add_argument("--agents", type=int, default=40, help="simulated agents (40)")
    ingest.add_argument("--desks", type=int, default=50, help="desks per agent (50)")
    ingest.add_argument("--publishers", type=int, default=2, help="publisher processes (2)")
    ingest.add_argument("--workers", type=int, default=1, help="server processes (1)")
    ingest.add_argument("--database", help="SQLAlchemy URL (default: SQLite in a temp dir)")
    ingest.add_argument(
        "--influx-down-at", type=float, metavar="S", help="stop InfluxDB S seconds in"
    )
    ingest.add_argument(
        "--influx-down-for", type=positive, default=60.0, metavar="S",
        help="and start it again S seconds later (60)",
    )  # fmt: skip
    ingest.add_argument(
        "--kill-worker-at", type=float, metavar="S",
        help="SIGKILL one ingest process S seconds in (needs --workers 2+)",
    )  # fmt: skip
    ingest.add_argument("--json", action="store_true", help="print one JSON object")
    ingest.set_defaults(handler=_bench_ingest)
    web = actions.add_parser(
        "web", help="server time of every page of a manager and a member on a big site"
    )
    web.add_argument("--desks", type=int, default=200, help="desks of the site (200)")
    web.add_argument("--members", type=int, default=2000, help="members (2000)")
    web.add_argument("--requests", type=int, default=40, help="timed requests per page (40)")
    web.add_argument("--json", action="store_true", help="print one JSON object")
    web.set_defaults(handler=_bench_web)


# --- ruche demo ------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from ruche.config import check_folder
    from ruche.sim.demo.run import run_demo

    if args.dir is not None:
        check_folder(args.dir, CliError, what="--dir")
    return run_demo(
        speed=args.speed,
        duration=args.duration,
        directory=args.dir,
        port=args.port,
        desks=args.desks,
        json_summary=args.json,
    )


def _speed(text: str) -> float:
    value = positive(text)
    if not 1 <= value <= 86_400:
        raise argparse.ArgumentTypeError(f"must be 1 to 86400, not {text}")
    return value


def _fill_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--speed", type=_speed, default=120.0, metavar="X",
        help="simulated seconds per real second (default 120: the day in about 7 minutes)",
    )  # fmt: skip
    parser.add_argument(
        "--duration", type=positive, metavar="S",
        help="stop after S seconds of the day (default: at closing time, or Ctrl-C)",
    )  # fmt: skip
    parser.add_argument(
        "--desks", type=at_least_one, default=40,
        help="desks at the site, 8 to 200 (default 40)",
    )  # fmt: skip
    parser.add_argument(
        "--json", action="store_true", help="print only the summary, one JSON object, on stdout"
    )
    parser.add_argument(
        "--dir", type=Path, help="working directory, kept (default: a temporary one)"
    )
    parser.add_argument("--port", type=int, help="broker port (default: a free one)")
    parser.set_defaults(handler=_demo)


COMMANDS: dict[str, Filler] = {"sim": _fill_sim, "bench": _fill_bench, "demo": _fill_demo}
