"""The registry: sites and their keys, zones, agents, desks and doors; members, badges,
plans, memberships, bookings, day passes and API keys. Every write checks its rules and
raises `ruche.server.errors` (never a SQLAlchemy error); callers own the transaction.

    from ruche.server import registry
    site = registry.create_site(session, slug="lyon", name="Lyon", timezone="Europe/Paris")

One module per kind of thing (`sites`, `devices`, `members`, `plans`, `bookings`, `keys`)
over what they share (`base`). Also here: plan schedules (`schedule`, pure, and
`schedule_spec`, their JSON), who owns which device (`ownership`), who is told of changes
(`listener`), and what `ruche admin` does (`admin`)."""

from ruche.server.registry.base import (
    API_KEY_PREFIX,
    MAX_GRACE_MINUTES,
    SITE_KEY_BYTES,
    check_slug,
    delete,
    get,
)
from ruche.server.registry.booking_limits import (
    BookingLimits,
    LimitExceeded,
    MembershipRequired,
    limits_for,
    list_limits,
    set_limits,
)
from ruche.server.registry.bookings import (
    add_day_pass,
    book,
    cancel_booking,
    list_bookings,
    list_day_passes,
    set_booking_status,
)
from ruche.server.registry.devices import (
    create_agent,
    create_desk,
    create_door,
    create_zone,
    get_agent_by_slug,
    get_door_by_slug,
    issue_agent_password,
    list_agents,
    list_desks,
    list_doors,
    list_zones,
    set_site_lockdown,
    update_desk,
    update_door,
    update_zone,
)
from ruche.server.registry.keys import (
    authenticate_api_key,
    create_api_key,
    revoke_api_key,
)
from ruche.server.registry.members import (
    create_member,
    enrol_badge,
    get_badge_by_token,
    list_badges,
    list_members,
    revoke_badge,
    set_badge_status,
    update_member,
)
from ruche.server.registry.plans import (
    check_schedule,
    create_membership,
    create_plan,
    end_membership,
    list_memberships,
    list_plans,
    update_plan,
)
from ruche.server.registry.sites import (
    add_holiday,
    create_site,
    create_site_key,
    get_site_by_slug,
    list_holidays,
    list_sites,
    remove_holiday,
    site_key_of,
    update_site,
)

__all__ = [
    "API_KEY_PREFIX",
    "MAX_GRACE_MINUTES",
    "SITE_KEY_BYTES",
    "BookingLimits",
    "LimitExceeded",
    "MembershipRequired",
    "add_day_pass",
    "add_holiday",
    "authenticate_api_key",
    "book",
    "cancel_booking",
    "check_schedule",
    "check_slug",
    "create_agent",
    "create_api_key",
    "create_desk",
    "create_door",
    "create_member",
    "create_membership",
    "create_plan",
    "create_site",
    "create_site_key",
    "create_zone",
    "delete",
    "end_membership",
    "enrol_badge",
    "get",
    "get_agent_by_slug",
    "get_badge_by_token",
    "get_door_by_slug",
    "get_site_by_slug",
    "issue_agent_password",
    "limits_for",
    "list_agents",
    "list_badges",
    "list_bookings",
    "list_day_passes",
    "list_desks",
    "list_doors",
    "list_holidays",
    "list_limits",
    "list_members",
    "list_memberships",
    "list_plans",
    "list_sites",
    "list_zones",
    "remove_holiday",
    "revoke_api_key",
    "revoke_badge",
    "set_badge_status",
    "set_booking_status",
    "set_limits",
    "set_site_lockdown",
    "site_key_of",
    "update_desk",
    "update_door",
    "update_member",
    "update_plan",
    "update_site",
    "update_zone",
]
