"""Entra / msal error dicts become AuthError with the AADSTS code and a fix (pure)."""

from __future__ import annotations

import base64
import json

import pytest

from d365nb import AuthError
from d365nb._auth import parse_redirect
from d365nb._tokens import _HINTS, auth_error_from_result, jwt_claims


def _entra_error(code: int, error: str) -> dict[str, object]:
    return {
        "error": error,
        "error_description": f"AADSTS{code}: Something went wrong.\r\nTrace ID: t\r\n"
        "Correlation ID: c\r\nTimestamp: 2026-01-01 00:00:00Z",
        "error_codes": [code],
        "correlation_id": "c0rr",
    }


@pytest.mark.parametrize(
    ("code", "error", "needle"),
    [
        (7000215, "invalid_client", "secret's Value"),
        (90002, "invalid_request", "tenant"),
        (65001, "invalid_grant", "consent"),
        (50011, "invalid_request", "redirect URI"),
        (700016, "unauthorized_client", "Client ID"),
        (70008, "invalid_grant", "sign in again"),
        (53003, "access_denied", "Conditional Access"),
        (50059, "invalid_request", "/common"),
        (901002, "invalid_request", "scope"),
    ],
)
def test_common_aadsts_codes_get_a_fix(code: int, error: str, needle: str) -> None:
    err = auth_error_from_result(_entra_error(code, error), action="Signing in")
    assert isinstance(err, AuthError)
    assert err.code == f"AADSTS{code}"
    assert err.error == error
    assert err.correlation_id == "c0rr"
    assert err.hint is not None and needle.lower() in err.hint.lower()
    # Only the first line of Entra's description: no trace ids in the message.
    assert "Trace ID" not in str(err)
    assert str(err).startswith("Signing in failed: AADSTS")


def test_code_is_read_from_the_description_when_codes_are_missing() -> None:
    err = auth_error_from_result(
        {"error": "invalid_client", "error_description": "AADSTS7000222: expired"},
        action="x",
    )
    assert err.code == "AADSTS7000222"
    assert err.hint == _HINTS[7000222]


def test_device_flow_errors_without_codes_still_explain() -> None:
    err = auth_error_from_result({"error": "authorization_declined"}, action="Device code")
    assert err.code is None
    assert err.hint is not None and "declined" in err.hint


def _jwt(claims: dict[str, object]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    return f"{b64(b'{}')}.{b64(json.dumps(claims).encode())}.sig"


def test_jwt_claims_decodes_payload_and_tolerates_opaque_tokens() -> None:
    assert jwt_claims(_jwt({"oid": "x", "exp": 12}))["exp"] == 12
    assert jwt_claims("opaque-token") == {}
    assert jwt_claims("a.!!!.c") == {}


@pytest.mark.parametrize(
    "answer",
    [
        "http://localhost/?code=abc&state=xyz",
        "http://localhost#code=abc&state=xyz",
        "?code=abc&state=xyz",
        "code=abc&state=xyz",
        {"code": "abc", "state": "xyz"},
    ],
)
def test_parse_redirect_accepts_every_form_a_user_pastes(answer: object) -> None:
    assert parse_redirect(answer) == {"code": "abc", "state": "xyz"}  # type: ignore[arg-type]
