"""`Sandbox.connect()`: a `Connection` already configured for a running sandbox."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._client import Connection
    from ._server import Sandbox

__all__ = ["connect_to"]


def connect_to(
    sandbox: Sandbox,
    *,
    grant: str = "client_credentials",
    version: str = "v2",
    **settings: Any,
) -> Connection:
    """A connection to `sandbox` with `grant`, using the sandbox's seeded app registrations.

    Client credentials use the confidential client (its application user); every other
    grant uses the public client.  `version="v1"` uses the v1 (`resource=`) endpoints.
    Tokens are kept in memory unless `token_cache=` says otherwise: sandbox ports change
    between starts.
    """
    from .._client import connect

    confidential = grant == "client_credentials"
    values: dict[str, Any] = {
        "service_url": sandbox.service_url,
        "tenant": sandbox.tenant,
        "client_id": sandbox.confidential_client_id if confidential else sandbox.public_client_id,
        "grant": grant,
        "token_uri": (
            sandbox.token_uri
            if version == "v2"
            else f"{sandbox.base_url}/{sandbox.tenant}/oauth2/token"
        ),
        "auth_uri": (
            sandbox.auth_uri
            if version == "v2"
            else f"{sandbox.base_url}/{sandbox.tenant}/oauth2/authorize"
        ),
    }
    if confidential:
        values["client_secret"] = sandbox.client_secret
    values.setdefault("verify", sandbox.ca_cert)
    values.setdefault("token_cache", False)
    values.update(settings)
    return connect(**values)
