"""The Web API out of reach: DNS, refused port, untrusted CA -> a clear TransportError."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

import d365nb
from d365nb import Connection, RetryPolicy, TransportError
from d365nb.sandbox import Sandbox
from tests._support.oauth import client_credentials_token

pytestmark = pytest.mark.sandbox


def given(sandbox: Sandbox, service_url: str, *, verify: object = None) -> Connection:
    """A connection with a valid access token whose Web API is `service_url`."""
    token = client_credentials_token(sandbox)["access_token"]
    return d365nb.connect(
        service_url=service_url,
        access_token=token,
        verify=sandbox.ca_cert if verify is None else verify,
        token_cache=False,
        retry=RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_cap=0.01),
    )


def assert_clear(err: TransportError, *words: str) -> None:
    text = str(err)
    for word in words:
        assert word in text, text
    assert "please report" not in text.lower()
    assert err.message.count(". ") == 0, "the cause in one sentence"
    assert err.hint and "Web API" in err.message
    assert "Traceback" not in text and len(text.splitlines()) <= 2


CALLS: dict[str, Callable[[Connection], object]] = {
    "whoami": lambda conn: conn.whoami(),
    "read": lambda conn: conn.read("accounts", top=1),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_unknown_host_is_a_dns_error(sandbox: Sandbox, call: str) -> None:
    conn = given(sandbox, "https://no-such-host.invalid/api/data/v9.2/")
    with pytest.raises(TransportError) as info:
        CALLS[call](conn)
    assert_clear(info.value, "no-such-host.invalid", "could not be found", "Service URL")


@pytest.mark.parametrize("call", sorted(CALLS))
def test_refused_port_says_nothing_answers(sandbox: Sandbox, call: str) -> None:
    conn = given(sandbox, "https://127.0.0.1:1/api/data/v9.2/")
    with pytest.raises(TransportError) as info:
        CALLS[call](conn)
    assert_clear(info.value, "127.0.0.1:1", "refused", "port", "Service URL")


@pytest.mark.parametrize("call", sorted(CALLS))
def test_untrusted_ca_names_verify_and_ca_cert(sandbox: Sandbox, call: str) -> None:
    conn = given(sandbox, sandbox.service_url, verify=True)
    with pytest.raises(TransportError) as info:
        CALLS[call](conn)
    assert_clear(info.value, "certificate", "verify=", "--ca-cert")


def test_proxy_failure_names_the_proxy_settings() -> None:
    from d365nb._tokens import known_transport_error

    err = known_transport_error(
        httpx.ProxyError("502 Bad Gateway"),
        "https://contoso.crm.dynamics.com/api/data/v9.2/WhoAmI",
        service="Web API",
        setting="Service URL",
    )
    assert err is not None
    assert_clear(err, "proxy", "HTTPS_PROXY", "contoso.crm.dynamics.com")
    # Time-outs and other breaks are not "known": the retry layer keeps its own text.
    assert known_transport_error(httpx.ReadError("reset"), "https://x.example/") is None
