"""Who may connect to the broker and touch which topics, as Mosquitto's dynamic security
plugin reads it: the document `ruche broker config` writes, and the commands that change
it while Mosquitto runs.

Why this plugin and not Mosquitto's `password_file` and `acl_file`: the ACL file never
checks a SUBSCRIBE (Mosquitto 2.0 accepts every subscription and filters only at
delivery), and nothing in it ties a client id to an account. An agent could then join the
server's shared subscription groups, where Mosquitto hands it a share of the taps and
alarms and drops them against its ACL, or connect with another agent's client id and
knock it offline. The plugin checks subscriptions (the whole filter, `$share/GROUP/`
prefix included) and binds a client id to each agent's account; docs/broker.md says
what each rule is for.

    >>> [acl["topic"] for acl in agent_role("lyon", "door-a")["acls"]][:2]
    ['ruche/v1/lyon/door-a/status', 'ruche/v1/lyon/door-a/desk/+/presence']
"""

from __future__ import annotations

from typing import Any, Final

from ruche.broker.accounts import AgentUser, BrokerUsers, agent_username
from ruche.broker.topics import ROOT, Channel, topic_filter

FILE_NAME: Final = "dynamic-security.json"
SERVER_ROLE: Final = "ruche-server"
CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC: Final = f"{CONTROL_TOPIC}/response"

# The agent's channels in a fixed order, so the document is the same on every run.
_AGENT_SENDS: Final = (
    Channel.STATUS,
    Channel.PRESENCE,
    Channel.DESK_BADGE,
    Channel.TAP,
    Channel.DOOR_EVENT,
)
_AGENT_READS: Final = (Channel.CMD, Channel.ALLOWLIST, Channel.ACK, Channel.CONFIG)

DEFAULT_ACCESS: Final = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}
"""Deny what no role allows. Unsubscribing stays open: it can only take away."""

Acl = dict[str, Any]


def _acl(kind: str, topic: str) -> Acl:
    return {"acltype": kind, "topic": topic, "allow": True, "priority": 0}


def agent_role_name(site: str, agent: str) -> str:
    """One role per agent: the plugin has no `%u` patterns, so each names its own topics."""
    return f"ruche-agent/{agent_username(site, agent)}"


def agent_role(site: str, agent: str) -> dict[str, Any]:
    """What one agent may do: publish its own events and status, and subscribe to and
    receive only the four topics the server writes for it, literally (no wildcard,
    no shared group)."""
    acls = [
        _acl("publishClientSend", topic_filter(c, site=site, agent=agent)) for c in _AGENT_SENDS
    ]
    for channel in _AGENT_READS:
        topic = topic_filter(channel, site=site, agent=agent)
        acls += [_acl("subscribeLiteral", topic), _acl("publishClientReceive", topic)]
    return {"rolename": agent_role_name(site, agent), "acls": acls}


def server_role() -> dict[str, Any]:
    """The server reads and writes the whole contract (through shared groups too), reads
    broker statistics, and changes agent accounts through the plugin's control topic."""
    everything = f"{ROOT}/#"
    acls = [
        _acl("publishClientSend", everything),
        _acl("publishClientReceive", everything),
        _acl("subscribePattern", everything),
        _acl("subscribePattern", f"$share/+/{everything}"),
        _acl("subscribePattern", "$SYS/#"),
        _acl("publishClientReceive", "$SYS/#"),
        _acl("publishClientSend", CONTROL_TOPIC),
        _acl("subscribeLiteral", RESPONSE_TOPIC),
        _acl("publishClientReceive", RESPONSE_TOPIC),
    ]
    return {"rolename": SERVER_ROLE, "acls": acls}


def password_fields(entry: str) -> dict[str, Any]:
    """A Mosquitto `$7$` hash as the plugin stores it: base64 hash and salt, iterations.

    >>> password_fields("$7$101$c2FsdHNhbHRzYWx0$aGFzaA==")
    {'password': 'aGFzaA==', 'salt': 'c2FsdHNhbHRzYWx0', 'iterations': 101}
    """
    parts = entry.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        raise ValueError("not a Mosquitto $7$ password hash")
    return {"password": parts[4], "salt": parts[3], "iterations": int(parts[2])}


def _agent_client(agent: AgentUser) -> dict[str, Any]:
    return {
        "username": agent.username,
        "clientid": agent.client_id,
        **password_fields(agent.password_hash),
        "roles": [{"rolename": agent_role_name(agent.site, agent.id)}],
        **({"disabled": True} if agent.disabled else {}),
    }


def render_dynsec(users: BrokerUsers) -> dict[str, Any]:
    """The plugin's whole configuration for these accounts.

    The server account is not bound to a client id (its workers connect several times
    over); an agent's account is bound to its own, so nobody can take its connection
    over, and it cannot take anyone else's.
    """
    server = {
        "username": users.server_username,
        **password_fields(users.server_hash),
        "roles": [{"rolename": SERVER_ROLE}],
    }
    return {
        "defaultACLAccess": dict(DEFAULT_ACCESS),
        "clients": [server, *(_agent_client(a) for a in users.agents)],
        "groups": [],
        "roles": [server_role(), *(agent_role(a.site, a.id) for a in users.agents)],
    }


# --- commands for a running broker (ruche.broker.control sends them) ---------------


def add_agent_commands(site: str, agent: str, password: str) -> list[dict[str, Any]]:
    """Create an agent's role and account. The plugin hashes the password itself."""
    role = agent_role(site, agent)
    username = agent_username(site, agent)
    return [
        {"command": "createRole", "rolename": role["rolename"], "acls": role["acls"]},
        {
            "command": "createClient",
            "username": username,
            "password": password,
            "clientid": username,
            "roles": [{"rolename": role["rolename"]}],
        },
    ]


def remove_agent_commands(site: str, agent: str) -> list[dict[str, Any]]:
    """Delete an agent's account (Mosquitto disconnects it at once) and its role."""
    return [
        {"command": "deleteClient", "username": agent_username(site, agent)},
        {"command": "deleteRole", "rolename": agent_role_name(site, agent)},
    ]
