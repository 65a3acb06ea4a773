"""The sandbox server: HTTPS with a generated CA, start/stop, knobs, subprocess mode."""

from __future__ import annotations

import os
import socket
import ssl
import stat
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from d365nb import ConfigError
from d365nb.sandbox import Sandbox, SandboxOptions, start
from d365nb.sandbox._certs import ensure_certificates

pytestmark = pytest.mark.sandbox


def _client(ca_cert: str) -> httpx.Client:
    return httpx.Client(
        verify=ssl.create_default_context(cafile=ca_cert), trust_env=False, timeout=30
    )


def test_serves_https_on_loopback_with_the_published_ca(sandbox: Sandbox) -> None:
    assert sandbox.base_url.startswith("https://127.0.0.1:")
    port = sandbox.base_url.rsplit(":", 1)[1]
    with _client(sandbox.ca_cert) as client:
        for origin in (sandbox.base_url, f"https://localhost:{port}"):
            response = client.get(f"{origin}/")
            assert response.status_code == 200
            assert "d365nb sandbox" in response.text


def test_clients_that_do_not_trust_the_ca_are_refused(sandbox: Sandbox) -> None:
    with httpx.Client(trust_env=False) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client.get(f"{sandbox.base_url}/")


def test_plain_http_is_not_served(sandbox: Sandbox) -> None:
    with httpx.Client(trust_env=False) as client:
        with pytest.raises(httpx.HTTPError):
            client.get(sandbox.base_url.replace("https://", "http://") + "/")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_data_dir_is_private_and_keys_owner_only(sandbox: Sandbox, sandbox_data_dir: Path) -> None:
    assert Path(sandbox.ca_cert).parent == sandbox_data_dir
    assert stat.S_IMODE(sandbox_data_dir.stat().st_mode) == 0o700
    for name in ("ca-key.pem", "server-key.pem", "signing-key.pem"):
        assert stat.S_IMODE((sandbox_data_dir / name).stat().st_mode) == 0o600, name


def test_server_certificate_names_loopback_and_chains_to_the_ca(sandbox: Sandbox) -> None:
    data_dir = Path(sandbox.ca_cert).parent
    ca = x509.load_pem_x509_certificate((data_dir / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((data_dir / "server.pem").read_bytes())
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "::1"}
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_restart_reuses_ca_and_signing_key(tmp_path: Path) -> None:
    with start(data_dir=tmp_path, database=":memory:", rows=5) as first:
        ca_bytes = Path(first.ca_cert).read_bytes()
        with _client(first.ca_cert) as client:
            kid = client.get(f"{first.authority}/discovery/v2.0/keys").json()["keys"][0]["kid"]
    with start(data_dir=tmp_path, database=":memory:", rows=5) as second:
        assert Path(second.ca_cert).read_bytes() == ca_bytes
        with _client(second.ca_cert) as client:
            keys = client.get(f"{second.authority}/discovery/v2.0/keys").json()["keys"]
    assert keys[0]["kid"] == kid


def test_server_certificate_is_renewed_for_a_new_host_name(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path)
    ca_before = first.ca_cert.read_bytes()
    server_before = first.server_cert.read_bytes()
    assert ensure_certificates(tmp_path).server_cert.read_bytes() == server_before
    second = ensure_certificates(tmp_path, hosts=("sandbox.example",))
    assert second.ca_cert.read_bytes() == ca_before
    cert = x509.load_pem_x509_certificate(second.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "sandbox.example" in san.get_values_for_type(x509.DNSName)


def test_unknown_knob_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'rows'") as info:
        start(rowz=10)
    assert info.value.field == "rowz"


def test_busy_port_is_a_clear_error(sandbox: Sandbox, tmp_path: Path) -> None:
    port = int(sandbox.base_url.rsplit(":", 1)[1])
    with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}") as info:
        start(port=port, data_dir=tmp_path)
    assert info.value.field == "port"


def test_stop_closes_the_port_and_ends_the_thread(tmp_path: Path) -> None:
    sb = start(data_dir=tmp_path, database=":memory:", rows=5, port=0)
    port = int(sb.base_url.rsplit(":", 1)[1])
    with _client(sb.ca_cert) as client:  # a pooled keep-alive connection stays open
        assert client.get(f"{sb.base_url}/").status_code == 200
        assert sb.running
        sb.stop()
        sb.stop()  # idempotent
    assert not sb.running
    assert sb._server is not None and not sb._server._thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_options_object_and_knobs_combine(tmp_path: Path) -> None:
    options = SandboxOptions(data_dir=tmp_path, database=":memory:", rows=5)
    with start(options=options, access_token_lifetime=1234) as sb:
        assert sb.options.rows == 5
        assert sb.options.access_token_lifetime == 1234
        with _client(sb.ca_cert) as client:
            response = client.post(
                sb.token_uri,
                data={
                    "grant_type": "client_credentials",
                    "client_id": sb.confidential_client_id,
                    "client_secret": sb.client_secret,
                    "scope": f"{sb.base_url}/.default",
                },
            )
        assert response.json()["expires_in"] == 1234


def test_repr_and_info_hold_no_secret(sandbox: Sandbox) -> None:
    assert sandbox.client_secret not in repr(sandbox)
    info = sandbox.info()
    for key in (
        "service_url",
        "authority",
        "token_uri",
        "auth_uri",
        "tenant",
        "ca_cert",
        "public_client_id",
        "confidential_client_id",
        "client_secret",
        "approve_url",
        "base_url",
        "device_login_url",
    ):
        assert info[key] == getattr(sandbox, key)
    assert info["authority"] == f"{sandbox.base_url}/{sandbox.tenant}"
    assert info["service_url"] == f"{sandbox.base_url}/api/data/v9.2/"


def test_control_endpoints_take_json_only(sandbox: Sandbox, https: httpx.Client) -> None:
    # A form post is what a cross-site page could send without a CORS preflight.
    response = https.post(sandbox.approve_url, data={"user_code": "ABC", "user": "alex"})
    assert response.status_code == 415
    response = https.post(sandbox.approve_url, json={"user_code": "NOSUCHCODE"})
    assert response.status_code == 404
    assert "No pending device code" in response.json()["message"]


def test_api_paths_go_to_the_web_api(sandbox: Sandbox, https: httpx.Client) -> None:
    response = https.get(f"{sandbox.service_url}WhoAmI")
    # The Web API wants a bearer token; the identity app would have answered 404.
    assert response.status_code == 401
    assert response.headers["www-authenticate"].lower().startswith("bearer")


@pytest.mark.slow
def test_subprocess_mode_serves_and_stops(tmp_path: Path) -> None:
    sb = start(subprocess=True, data_dir=tmp_path, database=":memory:", rows=5)
    try:
        assert sb.running
        assert Path(sb.ca_cert).parent == tmp_path
        with _client(sb.ca_cert) as client:
            response = client.post(
                sb.token_uri,
                data={
                    "grant_type": "client_credentials",
                    "client_id": sb.confidential_client_id,
                    "client_secret": sb.client_secret,
                    "scope": f"{sb.base_url}/.default",
                },
            )
        assert response.status_code == 200
        assert response.json()["token_type"] == "Bearer"
    finally:
        sb.stop()
    assert sb._process is not None and sb._process.returncode == 0


def test_reset_reseeds_the_web_api_data(tmp_path: Path) -> None:
    with start(data_dir=tmp_path, database=":memory:", rows=5) as sb, _client(sb.ca_cert) as c:
        token = c.post(
            sb.token_uri,
            data={
                "grant_type": "client_credentials",
                "client_id": sb.confidential_client_id,
                "client_secret": sb.client_secret,
                "scope": f"{sb.base_url}/.default",
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        def count() -> int:
            response = c.get(f"{sb.service_url}accounts/$count", headers=headers)
            assert response.status_code == 200, response.text
            return int(response.text.lstrip("\ufeff"))

        seeded = count()
        created = c.post(f"{sb.service_url}accounts", headers=headers, json={"name": "Temp"})
        assert created.status_code == 204, created.text
        assert count() == seeded + 1
        sb.reset()
        assert count() == seeded


def test_knobs_paths_go_to_the_web_api(sandbox: Sandbox, https: httpx.Client) -> None:
    # (The Web API mounts the knobs app, so Starlette redirects to the trailing slash.)
    response = https.get(f"{sandbox.base_url}/_sandbox/knobs", follow_redirects=True)
    assert response.status_code == 200, response.text
    assert "latency_ms" in response.json()


def test_an_idle_connection_stays_open_past_a_retry_after(sandbox: Sandbox) -> None:
    """A client that slept through a 5 s Retry-After reuses its connection: the server must
    not have closed it meanwhile (uvicorn's default keep-alive is 5 s)."""
    import time

    from d365nb.sandbox._server import KEEP_ALIVE_SECONDS

    assert KEEP_ALIVE_SECONDS >= 60
    host, port = sandbox.base_url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=sandbox.ca_cert)
    request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            for idle in (0, 6):
                time.sleep(idle)
                tls.sendall(request)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = tls.recv(65536)
                    assert chunk, "the server closed the connection"
                    head += chunk
                assert head.startswith(b"HTTP/1.1 200"), head[:100]
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = head.split(b"\r\n\r\n", 1)[1]
                while len(body) < length:
                    body += tls.recv(65536)
