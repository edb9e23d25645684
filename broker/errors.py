"""The contract's one exception, with a machine-readable reason."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a topic or payload was refused; also the label bad messages are counted under."""

    BAD_TOPIC = "bad_topic"
    UNSUPPORTED_VERSION = "unsupported_version"
    OVERSIZED = "oversized"
    BAD_JSON = "bad_json"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_VALUE = "bad_value"


class ContractError(ValueError):
    """A topic or payload that does not follow the wire contract.

    Every failure to parse what came off the wire raises this and nothing else,
    so a worker can count it by `reason`, log `detail` and carry on.
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
