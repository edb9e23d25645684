"""Errors as every route returns them, and the health endpoints' answers."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    Field,
)


class FieldError(BaseModel):
    loc: list[str | int]
    message: str


class ErrorPublic(BaseModel):
    """Every 4xx: `detail` says what was wrong and what to do."""

    detail: str
    errors: list[FieldError] = Field(
        default_factory=list, description="For 422: one entry per refused field."
    )


class HealthPublic(BaseModel):
    status: Literal["ok"] = "ok"
