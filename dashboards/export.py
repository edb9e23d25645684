"""Grafana provisioning files: the data source, a file provider, and one JSON per dashboard.

    export(Path("grafana"), Datasource(url="http://influxdb:8086", database="ruche"))

writes

    grafana/provisioning/datasources/ruche.yaml   the InfluxDB data source (fixed uid)
    grafana/provisioning/dashboards/ruche.yaml    a file provider: folder "Ruche", the path below
    grafana/dashboards/<uid>.json                 one per dashboard

Point Grafana's `paths.provisioning` at `grafana/provisioning`; the provider reads the
dashboards from `dashboards_path` (default: the absolute path of `grafana/dashboards`
here; give the path Grafana sees when it runs elsewhere, in a container say).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ruche.dashboards.catalogue import DASHBOARDS
from ruche.dashboards.datasource import Datasource
from ruche.dashboards.model import Dashboard, dashboard_json

FOLDER_TITLE = "Ruche"
FOLDER_UID = "ruche"
PROVIDER_NAME = "ruche"


def datasource_file(datasource: Datasource) -> dict[str, Any]:
    """`provisioning/datasources/ruche.yaml`: Grafana creates or updates it on every start."""
    return {
        "apiVersion": 1,
        "datasources": [{**datasource.provisioning(), "orgId": 1}],
    }


def provider_file(dashboards_path: Path) -> dict[str, Any]:
    """`provisioning/dashboards/ruche.yaml`: Grafana loads every JSON under the path."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": PROVIDER_NAME,
                "orgId": 1,
                "folder": FOLDER_TITLE,
                "folderUid": FOLDER_UID,
                "type": "file",
                "disableDeletion": False,
                # Changes belong in the code: the files win over edits made in Grafana.
                "allowUiUpdates": False,
                "updateIntervalSeconds": 30,
                "options": {"path": str(dashboards_path), "foldersFromFilesStructure": False},
            }
        ],
    }


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def export(
    out_dir: Path,
    datasource: Datasource,
    *,
    dashboards: Sequence[Dashboard] = DASHBOARDS,
    dashboards_path: Path | None = None,
) -> list[Path]:
    """Write the provisioning files and dashboards under `out_dir`; returns the paths.

    Writing again overwrites the same files, so an export can be repeated (after an
    upgrade, say) and Grafana picks the changes up.
    """
    out_dir = out_dir.resolve()
    target = out_dir / "dashboards"
    provider_path = dashboards_path if dashboards_path is not None else target
    written = [
        _write(
            out_dir / "provisioning" / "datasources" / "ruche.yaml",
            yaml.safe_dump(datasource_file(datasource), sort_keys=False),
        ),
        _write(
            out_dir / "provisioning" / "dashboards" / "ruche.yaml",
            yaml.safe_dump(provider_file(provider_path), sort_keys=False),
        ),
    ]
    for dashboard in dashboards:
        model = dashboard_json(dashboard, datasource_uid=datasource.uid)
        text = json.dumps(model, indent=2, ensure_ascii=False) + "\n"
        written.append(_write(target / f"{dashboard.uid}.json", text))
    return written
