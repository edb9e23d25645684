"""The InfluxDB data source the dashboards query, in Grafana's two shapes: a provisioning
file entry and an HTTP API body. Pure.

InfluxQL over InfluxDB's v1 `/query`, which 1.x, 2.x (database mapped to a bucket) and
3.x all serve. A token (2.x, 3.x) goes in an `Authorization: Token ...` header: the
provisioning file names an environment variable that Grafana expands when it reads the
file, so no secret is written to disk; a push sends the token itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ruche.config import is_http_url
from ruche.dashboards.model import DATASOURCE_TYPE, DATASOURCE_UID

_ENV_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True, slots=True, kw_only=True)
class Datasource:
    """Where Grafana finds Ruche's points.

    - `url`: InfluxDB's base URL as Grafana (not this machine) reaches it.
    - `database`: the database (2.x: mapped to a bucket) the server writes to.
    - `token_env`: for a provisioning file, the environment variable holding an InfluxDB
      2.x/3.x token, read by Grafana; none for an InfluxDB without authentication.
    """

    url: str = "http://127.0.0.1:8086"
    database: str = "ruche"
    name: str = "Ruche InfluxDB"
    uid: str = DATASOURCE_UID
    token_env: str | None = None

    def __post_init__(self) -> None:
        if not is_http_url(self.url):
            raise ValueError(
                f"InfluxDB URL {self.url!r} must be http:// or https://, a host and maybe a "
                "port, e.g. http://127.0.0.1:8086"
            )
        if not self.database:
            raise ValueError("the InfluxDB database name is empty")
        if self.token_env is not None and (
            not self.token_env
            or self.token_env[0].isdigit()
            or not set(self.token_env) <= _ENV_NAME_CHARS
        ):
            raise ValueError(
                f"{self.token_env!r} is not an environment variable name "
                "(letters, digits and _, not starting with a digit)"
            )

    def _common(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uid": self.uid,
            "type": DATASOURCE_TYPE,
            "access": "proxy",
            "url": self.url,
            # Older Grafanas read `database`, newer ones `jsonData.dbName`: both, for any.
            "database": self.database,
            "isDefault": False,
            "jsonData": {
                "version": "InfluxQL",
                "dbName": self.database,
                "httpMode": "POST",
                "timeInterval": "10s",
            },
        }

    def provisioning(self) -> dict[str, Any]:
        """The entry of `provisioning/datasources/*.yaml` (Grafana expands `${VAR}`)."""
        entry = self._common()
        entry["editable"] = False
        if self.token_env is not None:
            entry["jsonData"]["httpHeaderName1"] = "Authorization"
            entry["secureJsonData"] = {"httpHeaderValue1": f"Token ${{{self.token_env}}}"}
        return entry

    def api_body(self, token: str | None = None) -> dict[str, Any]:
        """The body of `POST /api/datasources` and `PUT /api/datasources/uid/{uid}`."""
        body = self._common()
        if token:
            body["jsonData"]["httpHeaderName1"] = "Authorization"
            body["secureJsonData"] = {"httpHeaderValue1": f"Token {token}"}
        return body
