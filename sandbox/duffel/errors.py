"""Duffel's error envelope, raised anywhere in the stand-in and rendered by the app."""

from __future__ import annotations

from typing import Any

import orjson

DOCS_URL = "https://duffel.com/docs/api/overview/errors"


class DuffelError(Exception):
    """One Duffel error: HTTP status plus the ``errors[0]`` fields of the envelope."""

    def __init__(
        self,
        status: int,
        type_: str,
        code: str,
        title: str,
        message: str,
        field: str | None = None,
        pointer: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.code = code
        self.title = title
        self.message = message
        self.field = field
        self.pointer = pointer

    def body(self, request_id: str) -> bytes:
        error: dict[str, Any] = {
            "type": self.type,
            "code": self.code,
            "title": self.title,
            "message": self.message,
            "documentation_url": DOCS_URL,
        }
        if self.field is not None:
            error["source"] = {"field": self.field, "pointer": self.pointer or f"/{self.field}"}
        return orjson.dumps(
            {"errors": [error], "meta": {"status": self.status, "request_id": request_id}}
        )


def validation(
    field: str,
    message: str,
    code: str = "validation_format",
    title: str = "Invalid value",
    pointer: str | None = None,
) -> DuffelError:
    return DuffelError(422, "validation_error", code, title, message, field, pointer)


def required(field: str, pointer: str | None = None) -> DuffelError:
    return validation(
        field, f"Field '{field}' can't be blank", "validation_required", "Required field", pointer
    )


def invalid_state(code: str, title: str, message: str) -> DuffelError:
    return DuffelError(422, "invalid_state_error", code, title, message)


def not_found() -> DuffelError:
    return DuffelError(
        404,
        "invalid_request_error",
        "not_found",
        "Not found",
        "The resource you are trying to access does not exist.",
    )
