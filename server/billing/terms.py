"""Plan terms as the JSON a price version stores: `terms_json` writes it, `terms_of`
reads it back (Invalid saying what is wrong)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ruche.server.billing.money import amount, decimal_text
from ruche.server.billing.pricing import (
    AllowanceUnit,
    DayPass,
    MonthlyPlan,
    PayAsYouGo,
    PlanTerms,
)
from ruche.server.errors import Invalid

_TERMS_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    # kind: (required fields, optional fields)
    "monthly": ({"fee", "included", "unit", "overage"}, set()),
    "pay_as_you_go": ({"per_minute", "minimum_charge", "daily_cap"}, {"monthly_cap"}),
    "day_pass": ({"price"}, set()),
}


def terms_json(terms: PlanTerms) -> dict[str, Any]:
    """`terms` as stored and shown: a `kind` and decimal strings."""
    if isinstance(terms, MonthlyPlan):
        return {
            "kind": "monthly",
            "fee": decimal_text(terms.fee),
            "included": decimal_text(terms.included),
            "unit": terms.unit.value,
            "overage": decimal_text(terms.overage),
        }
    if isinstance(terms, PayAsYouGo):
        return {
            "kind": "pay_as_you_go",
            "per_minute": decimal_text(terms.per_minute),
            "minimum_charge": decimal_text(terms.minimum_charge),
            "daily_cap": decimal_text(terms.daily_cap),
            "monthly_cap": None if terms.monthly_cap is None else decimal_text(terms.monthly_cap),
        }
    return {"kind": "day_pass", "price": decimal_text(terms.price)}


def terms_of(value: Mapping[str, Any]) -> PlanTerms:
    """The pure plan terms a `terms_json` object describes; Invalid saying what is wrong."""
    if not isinstance(value, Mapping):
        raise Invalid(f"plan terms are a JSON object with a 'kind', not {value!r}")
    kind = value.get("kind")
    if kind not in _TERMS_FIELDS:
        raise Invalid(
            f"unknown plan terms kind {kind!r}: use one of {', '.join(sorted(_TERMS_FIELDS))}"
        )
    required, optional = _TERMS_FIELDS[kind]
    given = set(value) - {"kind"}
    if missing := sorted(required - given):
        raise Invalid(f"{kind} terms need {', '.join(missing)}")
    if extra := sorted(given - required - optional):
        raise Invalid(f"{kind} terms take no {', '.join(extra)}")

    def money(name: str) -> Decimal:
        return amount(value[name], f"{kind} terms' {name}")

    if kind == "monthly":
        unit = value["unit"]
        if unit not in {u.value for u in AllowanceUnit}:
            raise Invalid(f"a monthly plan includes 'day' or 'hour' units, not {unit!r}")
        return MonthlyPlan(money("fee"), money("included"), AllowanceUnit(unit), money("overage"))
    if kind == "pay_as_you_go":
        cap = value.get("monthly_cap")
        return PayAsYouGo(
            money("per_minute"),
            money("minimum_charge"),
            money("daily_cap"),
            None if cap is None else money("monthly_cap"),
        )
    return DayPass(money("price"))
