"""The booking event feed client's corner cases, through ``httpx.MockTransport``: a feed that
breaks its paging contract, typed errors, and the operator token kept out of every message."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from clients.http import RetryPolicy
from clients.platform import (
    BookingApiAuthError,
    BookingApiUnavailable,
    FeedContractError,
    PlatformSettings,
    build_booking_events_client,
)

TOKEN = "op-token-for-client-tests-9876"
FAST = RetryPolicy(max_attempts=2, max_elapsed_seconds=2, base_delay_seconds=0.01)


def client_for(handler) -> object:
    settings = PlatformSettings(
        booking_api_url="http://booking.test", booking_operator_token=SecretStr(TOKEN)
    )
    return build_booking_events_client(settings, retry=FAST, transport=httpx.MockTransport(handler))


def page(events: list[dict], cursor: str, more: bool) -> httpx.Response:
    return httpx.Response(
        200, json={"data": {"events": events, "next_cursor": cursor, "has_more": more}}
    )


def test_pages_by_cursor_with_the_tenant_filter_and_the_operator_token() -> None:
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        if "cursor" not in request.url.params:
            return page([{"id": "3"}, {"id": "5"}], "5", True)
        return page([{"id": "8"}], "8", False)

    with client_for(handler) as client:
        pages = list(client.iter_pages(0, tenant_id="telcocorp", page_size=2))
    assert [p.next_cursor for p in pages] == ["5", "8"]
    assert seen == [
        {"limit": "2", "tenant_id": "telcocorp"},
        {"limit": "2", "cursor": "5", "tenant_id": "telcocorp"},
    ]


@pytest.mark.parametrize(
    ("events", "cursor", "more"),
    [([{"id": "4"}], "2", False), ([], "2", True), ([{"id": "4"}], "abc", False)],
)
def test_a_cursor_that_does_not_move_forward_is_refused_not_looped_on(
    events: list[dict], cursor: str, more: bool
) -> None:
    with (
        client_for(lambda request: page(events, cursor, more)) as client,
        pytest.raises(FeedContractError, match="after cursor 2"),
    ):
        list(client.iter_pages(2))


def test_a_body_of_another_shape_is_a_contract_error() -> None:
    with (
        client_for(lambda request: httpx.Response(200, json={"events": []})) as client,
        pytest.raises(FeedContractError, match="unexpected response body"),
    ):
        list(client.iter_pages())


def test_errors_are_typed_and_never_carry_the_token() -> None:
    refused = httpx.Response(
        401,
        json={"type": "https://x/unauthorized", "status": 401, "detail": f"bad token {TOKEN}"},
    )
    with client_for(lambda request: refused) as client, pytest.raises(BookingApiAuthError) as auth:
        list(client.iter_pages())
    assert TOKEN not in str(auth.value) and "BOOKING_OPERATOR_TOKEN" in str(auth.value)

    with (
        client_for(lambda request: httpx.Response(503, text="<html>down</html>")) as client,
        pytest.raises(BookingApiUnavailable) as down,
    ):
        list(client.iter_pages())
    assert down.value.status == 503 and "BOOKING_API_URL" in str(down.value)


def test_no_token_no_client() -> None:
    with pytest.raises(ValueError, match="BOOKING_OPERATOR_TOKEN is not set"):
        build_booking_events_client(PlatformSettings(booking_operator_token=""))
