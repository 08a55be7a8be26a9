"""error_from_response, tested alone on hand-made httpx responses."""

from __future__ import annotations

import httpx
import pytest

from curator_client import (
    APIError,
    BadRequest,
    Conflict,
    CuratorError,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServerError,
    TransportError,
    Unauthorized,
    error_from_response,
)


def _error_response(status: int, type_: str, message: str, details: object) -> httpx.Response:
    body = {"error": {"type": type_, "message": message, "details": details}}
    return httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("status", "type_", "cls"),
    [
        (400, "bad_request", BadRequest),
        (401, "unauthorized", Unauthorized),
        (403, "forbidden", Forbidden),
        (404, "not_found", NotFound),
        (409, "conflict", Conflict),
        (413, "payload_too_large", PayloadTooLarge),
        (422, "invalid_request", InvalidRequest),
        (500, "internal", ServerError),
        (503, "unavailable", ServerError),
    ],
)
def test_error_shape_maps_status_to_class(status: int, type_: str, cls: type) -> None:
    details = {"field": "batch_size", "why": ["too", "big"]}
    err = error_from_response(_error_response(status, type_, "it broke", details))
    assert type(err) is cls
    assert isinstance(err, APIError)
    assert isinstance(err, CuratorError)
    assert err.status_code == status
    assert err.type == type_
    assert err.message == "it broke"
    assert err.details == details
    assert str(err) == f"{status} {type_}: it broke"
    assert err.response is not None and err.response.status_code == status


def test_class_follows_status_not_body_type() -> None:
    err = error_from_response(_error_response(404, "conflict", "odd", None))
    assert type(err) is NotFound
    assert err.type == "conflict"


@pytest.mark.parametrize("status", [502, 504, 599])
def test_other_5xx_are_server_errors(status: int) -> None:
    err = error_from_response(_error_response(status, "internal", "x", None))
    assert type(err) is ServerError


@pytest.mark.parametrize("status", [405, 418, 429])
def test_unmapped_4xx_is_plain_api_error(status: int) -> None:
    err = error_from_response(httpx.Response(status, text="nope"))
    assert type(err) is APIError
    assert err.status_code == status
    assert err.type == "http_error"
    assert err.message == "nope"


def test_html_502_from_a_proxy() -> None:
    html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    response = httpx.Response(502, text=html, headers={"Content-Type": "text/html"})
    err = error_from_response(response)
    assert type(err) is ServerError
    assert err.status_code == 502
    assert err.type == "internal"
    assert err.message == html
    assert err.details is None


def test_non_json_503_gets_unavailable_type() -> None:
    err = error_from_response(httpx.Response(503, text="upstream connect error"))
    assert type(err) is ServerError
    assert err.type == "unavailable"
    assert err.message == "upstream connect error"


def test_empty_body_uses_reason_phrase() -> None:
    err = error_from_response(httpx.Response(401))
    assert type(err) is Unauthorized
    assert err.type == "unauthorized"
    assert err.message == "Unauthorized"


def test_json_without_error_key_uses_text() -> None:
    err = error_from_response(httpx.Response(400, json={"oops": 1}))
    assert type(err) is BadRequest
    assert err.message == '{"oops":1}' or err.message == '{"oops": 1}'
    assert err.details is None


def test_fastapi_default_detail_body() -> None:
    detail = [{"loc": ["body", "batch_size"], "msg": "field required", "type": "missing"}]
    err = error_from_response(httpx.Response(422, json={"detail": detail}))
    assert type(err) is InvalidRequest
    assert err.type == "invalid_request"
    assert err.details == detail
    err = error_from_response(httpx.Response(404, json={"detail": "Not Found"}))
    assert type(err) is NotFound
    assert err.message == "Not Found"


def test_long_text_is_truncated() -> None:
    err = error_from_response(httpx.Response(500, text="x" * 10_000))
    assert err.message.startswith("xxx")
    assert len(err.message) < 2100


def test_error_without_message_falls_back_to_text() -> None:
    err = error_from_response(httpx.Response(409, json={"error": {"type": "conflict"}}))
    assert type(err) is Conflict
    assert err.type == "conflict"
    assert "conflict" in err.message


def test_transport_error_is_a_curator_error_not_api_error() -> None:
    assert issubclass(TransportError, CuratorError)
    assert not issubclass(TransportError, APIError)
