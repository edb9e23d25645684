"""Plan terms as a price version stores them and the API takes and shows them: the one
typed model of that JSON (`TermsSpec`), checked once where it comes in, and turned into
the pure `PlanTerms` of `ruche.server.billing.pricing` where prices are computed.

    >>> terms_of({"kind": "day_pass", "price": "15.00"})
    DayPass(price=Decimal('15'))
    >>> terms_json(terms_of({"kind": "day_pass", "price": "15.00"}))
    {'kind': 'day_pass', 'price': '15'}
    >>> terms_of({"kind": "monthly", "fee": "200", "included": "10", "unit": "day"})
    Traceback (most recent call last):
    ...
    ruche.server.errors.Invalid: monthly terms need overage
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from ruche.server.billing.money import amount, decimal_text
from ruche.server.billing.pricing import (
    AllowanceUnit,
    DayPass,
    MonthlyPlan,
    PayAsYouGo,
    PlanTerms,
)
from ruche.server.errors import Invalid

Amount = Annotated[
    str,
    StringConstraints(pattern=r"^\d{1,9}(\.\d{1,6})?$"),
    Field(description="A decimal amount as a string, such as '12.50' (exact: never a float)."),
]


class _Terms(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator(
        "fee", "included", "overage", "per_minute", "minimum_charge", "daily_cap",
        "monthly_cap", "price", mode="before", check_fields=False,
    )  # fmt: skip
    @classmethod
    def _exact(cls, value: object, info: ValidationInfo) -> object:
        """An amount as a decimal string: a Decimal or an int is written as one, a float or
        anything else is refused with money's own sentence."""
        if value is None:
            return value
        try:
            return decimal_text(amount(value, f"the terms' {info.field_name}"))  # type: ignore[arg-type]
        except Invalid as exc:
            raise ValueError(str(exc)) from exc


class MonthlyTerms(_Terms):
    """A monthly fee with `included` days or hours; each one more costs `overage`."""

    kind: Literal["monthly"]
    fee: Amount
    included: Amount
    unit: Literal["day", "hour"]
    overage: Amount = Field(description="Per day, or per hour (charged by the minute).")

    def to_terms(self) -> MonthlyPlan:
        return MonthlyPlan(_money(self.fee, "fee"), _money(self.included, "included"),
                           AllowanceUnit(self.unit), _money(self.overage, "overage"))  # fmt: skip


class PayAsYouGoTerms(_Terms):
    """Per minute, with a minimum and a cap per day, and an optional monthly cap."""

    kind: Literal["pay_as_you_go"]
    per_minute: Amount
    minimum_charge: Amount
    daily_cap: Amount
    monthly_cap: Amount | None = None

    def to_terms(self) -> PayAsYouGo:
        cap = None if self.monthly_cap is None else _money(self.monthly_cap, "monthly_cap")
        return PayAsYouGo(_money(self.per_minute, "per_minute"),
                          _money(self.minimum_charge, "minimum_charge"),
                          _money(self.daily_cap, "daily_cap"), cap)  # fmt: skip


class DayPassTerms(_Terms):
    """One pass per used day."""

    kind: Literal["day_pass"]
    price: Amount

    def to_terms(self) -> DayPass:
        return DayPass(_money(self.price, "price"))


TermsSpec = Annotated[MonthlyTerms | PayAsYouGoTerms | DayPassTerms, Field(discriminator="kind")]
_KINDS = ("day_pass", "monthly", "pay_as_you_go")
_ADAPTER: TypeAdapter[MonthlyTerms | PayAsYouGoTerms | DayPassTerms] = TypeAdapter(TermsSpec)


def parse_terms(
    value: MonthlyTerms | PayAsYouGoTerms | DayPassTerms | Mapping[str, Any],
) -> MonthlyTerms | PayAsYouGoTerms | DayPassTerms:
    """Plan terms checked; Invalid saying what is wrong."""
    if isinstance(value, MonthlyTerms | PayAsYouGoTerms | DayPassTerms):
        return value
    if not isinstance(value, Mapping):
        raise Invalid(f"plan terms are a JSON object with a 'kind', not {value!r}")
    try:
        return _ADAPTER.validate_python(value)
    except ValidationError as exc:
        raise Invalid(_problem(exc, value.get("kind"))) from exc


def terms_of(value: MonthlyTerms | PayAsYouGoTerms | DayPassTerms | Mapping[str, Any]) -> PlanTerms:
    """The pure plan terms stored or given terms describe; Invalid saying what is wrong."""
    return parse_terms(value).to_terms()


def terms_json(terms: PlanTerms) -> dict[str, Any]:
    """`terms` as stored and shown: a `kind` and decimal strings."""
    spec: MonthlyTerms | PayAsYouGoTerms | DayPassTerms
    if isinstance(terms, MonthlyPlan):
        spec = MonthlyTerms(kind="monthly", fee=decimal_text(terms.fee),
                            included=decimal_text(terms.included), unit=terms.unit.value,
                            overage=decimal_text(terms.overage))  # fmt: skip
    elif isinstance(terms, PayAsYouGo):
        cap = None if terms.monthly_cap is None else decimal_text(terms.monthly_cap)
        spec = PayAsYouGoTerms(
            kind="pay_as_you_go", per_minute=decimal_text(terms.per_minute),
            minimum_charge=decimal_text(terms.minimum_charge),
            daily_cap=decimal_text(terms.daily_cap), monthly_cap=cap,
        )  # fmt: skip
    else:
        spec = DayPassTerms(kind="day_pass", price=decimal_text(terms.price))
    return spec.model_dump(mode="json")


def _money(text: str, name: str) -> Decimal:
    return amount(text, f"the terms' {name}")


def _problem(exc: ValidationError, kind: object) -> str:
    """Pydantic's first error as the sentence an operator can act on."""
    first = exc.errors(include_url=False, include_input=False)[0]
    field = str(first["loc"][-1]) if first["loc"] else ""
    if first["type"] in {"union_tag_invalid", "union_tag_not_found"}:
        return f"unknown plan terms kind {kind!r}: use one of {', '.join(_KINDS)}"
    if first["type"] == "missing":
        return f"{kind} terms need {field}"
    if first["type"] == "extra_forbidden":
        return f"{kind} terms take no {field}"
    if field == "unit":
        return f"a monthly plan includes 'day' or 'hour' units, not {first.get('input')!r}"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{kind} terms' {field}: {message}"
