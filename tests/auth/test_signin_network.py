"""The sign-in service out of reach: DNS, refused port, untrusted CA -> a clear TransportError."""

from __future__ import annotations

import pytest

import d365nb
from d365nb import TransportError
from d365nb.sandbox import Sandbox
from d365nb.sandbox._connect import connect_to

pytestmark = pytest.mark.sandbox


def token_uri(sb: Sandbox, origin: str, version: str) -> str:
    path = "oauth2/v2.0/token" if version == "v2" else "oauth2/token"
    return f"{origin}/{sb.tenant}/{path}"


def assert_clear(err: TransportError, *words: str) -> None:
    text = f"{err.message} {err.hint}"
    for word in words:
        assert word in text, text
    assert "please report" not in text.lower()
    assert err.message.count(". ") == 0, "the cause in one sentence"
    assert err.hint


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_unknown_host_is_a_dns_error(sandbox: Sandbox, version: str) -> None:
    uri = token_uri(sandbox, "https://no-such-host.invalid", version)
    conn = connect_to(sandbox, grant="client_credentials", version=version, token_uri=uri,
                      auth_uri=None)  # fmt: skip
    with pytest.raises(TransportError) as info:
        conn.whoami()
    assert_clear(info.value, "no-such-host.invalid", "could not be found", "Token URI")


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_refused_port_says_nothing_answers(sandbox: Sandbox, version: str) -> None:
    uri = token_uri(sandbox, "https://127.0.0.1:1", version)
    conn = connect_to(sandbox, grant="client_credentials", version=version, token_uri=uri,
                      auth_uri=None)  # fmt: skip
    with pytest.raises(TransportError) as info:
        conn.whoami()
    assert_clear(info.value, "127.0.0.1:1", "refused", "port")


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_untrusted_ca_names_verify_and_ca_cert(sandbox: Sandbox, version: str) -> None:
    conn = connect_to(sandbox, grant="client_credentials", version=version, verify=True)
    with pytest.raises(TransportError) as info:
        conn.whoami()
    assert_clear(info.value, "certificate", "verify=", "--ca-cert")


def test_interactive_sign_in_out_of_reach_is_a_transport_error(sandbox: Sandbox) -> None:
    conn = d365nb.connect(
        service_url=sandbox.service_url,
        client_id=sandbox.public_client_id,
        token_uri=token_uri(sandbox, "https://127.0.0.1:1", "v2"),
        grant="device_code",
        verify=sandbox.ca_cert,
        token_cache=False,
    )
    conn.prompt = lambda code: None
    with pytest.raises(TransportError) as info:
        conn.sign_in()
    assert_clear(info.value, "refused")
