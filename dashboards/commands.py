"""`ruche dashboards export|push`: Grafana's dashboards as files, or into a Grafana.

The parser imports nothing but argparse; the handler imports what it runs (see pyproject's
per-file ignores): PyYAML to export, Grafana's client to push."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ruche.commands import CliError, Filler


def _run(args: argparse.Namespace) -> int:
    from ruche.dashboards.datasource import Datasource

    env = args.influx_token_env
    try:
        datasource = Datasource(url=args.influx_url, database=args.database, token_env=env)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if args.dashboards_command == "export":
        from ruche.dashboards.export import export as write

        try:
            paths = write(args.out, datasource, dashboards_path=args.dashboards_path)
        except OSError as exc:
            raise CliError(f"{exc.filename or args.out}: {exc.strerror}") from exc
        for path in paths:
            print(f"wrote {path}")
        return 0
    if not args.token:
        raise CliError("give --token (a Grafana service account token) or set GRAFANA_TOKEN")
    influx_token = None
    if env is not None:
        influx_token = os.environ.get(env)
        if not influx_token:
            raise CliError(f"--influx-token-env {env}: that variable is not set")
    from ruche.dashboards.push import PushError, push

    try:
        report = push(args.url, args.token, datasource, influx_token=influx_token)
    except PushError as exc:
        raise CliError(str(exc)) from exc
    print(f"data source {datasource.uid}: {report.datasource}; folder: {report.folder}")
    for uid, version in report.dashboards:
        print(f"dashboard {uid}: version {version}")
    return 0


def _fill_dashboards(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="dashboards_command", required=True, metavar="ACTION")
    source = argparse.ArgumentParser(add_help=False)
    source.add_argument("--influx-url", default="http://127.0.0.1:8086",
                        help="InfluxDB as Grafana reaches it (http://127.0.0.1:8086)")  # fmt: skip
    source.add_argument("--database", default="ruche", help="the InfluxDB database (ruche)")
    source.add_argument(
        "--influx-token-env", metavar="NAME",
        help="environment variable holding an InfluxDB 2.x/3.x token (none: no auth)",
    )  # fmt: skip
    export = actions.add_parser(
        "export", parents=[source], help="write Grafana provisioning files and dashboard JSON"
    )
    export.add_argument("--out", type=Path, required=True, help="directory to write into")
    export.add_argument(
        "--dashboards-path", type=Path, metavar="PATH",
        help="where Grafana will read the JSON files (default: OUT/dashboards here)",
    )  # fmt: skip
    push_ = actions.add_parser(
        "push", parents=[source], help="create or update them in a running Grafana"
    )
    push_.add_argument("--url", required=True, help="Grafana's URL, e.g. http://127.0.0.1:3000")
    push_.add_argument("--token", default=os.environ.get("GRAFANA_TOKEN"),
                       help="a service account token (default: $GRAFANA_TOKEN)")  # fmt: skip
    for sub in (export, push_):
        sub.set_defaults(handler=_run)


COMMANDS: dict[str, Filler] = {"dashboards": _fill_dashboards}
