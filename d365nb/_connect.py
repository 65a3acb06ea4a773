"""`d365nb.connect()`: settings in, the right connection out.

A Dataverse environment gives a `Connection`; a finance and operations environment
(an `*.operations.dynamics.com` Service URL, a `/data/` root, or `service="fno"`) gives an
`FnoConnection`.  This module sits above both so that neither imports the other.
"""

from __future__ import annotations

import os
from typing import Any

from ._auth import CredentialLike
from ._client import Connection
from ._config import Settings
from ._fno_client import FnoConnection
from ._transport import RetryPolicy
from ._types import VerifyTypes

__all__ = ["connect"]


def connect(
    connection_string: str | None = None,
    /,
    *,
    profile: str | None = None,
    verify: VerifyTypes = True,
    credential: CredentialLike | None = None,
    token_cache: bool | str | os.PathLike[str] = True,
    timeout: float = 120.0,
    max_concurrency: int = 16,
    retry: RetryPolicy | None = None,
    metadata_cache: bool | str | os.PathLike[str] | None = None,
    **settings: Any,
) -> Connection:
    """A `Connection` from keyword settings, a vendor-style connection string or a profile.

    ```python
    conn = d365nb.connect(service_url="https://org.crm.dynamics.com",
                          client_id="...", tenant="contoso.onmicrosoft.com")
    conn = d365nb.connect("ServiceURL=https://...;ClientID=...;TokenURI=POST https://...;")
    ```

    **Parameters:**

    * **connection_string** - `Key=Value;` pairs as vendor drivers take them.
    * **profile** - a saved profile's name (profiles never hold secrets).
    * **verify** - `True`, a CA file path or an `ssl.SSLContext` to trust.
    * **credential** - an azure-identity style credential (`get_token(*scopes)`).
    * **token_cache** - `True` (per-user folder), a folder path, or `False`.
    * **timeout** - seconds for each HTTP request.
    * **max_concurrency** - the most requests in flight at once.
    * **metadata_cache** - where table metadata is kept between processes: `True` (the
      per-user cache folder; the default), a folder path, or `False` (memory only).
    * **retry** - a `RetryPolicy` (attempts, total wait) for 429/503/network errors.
    * **settings** - any `Settings` field: service_url, client_id, client_secret, tenant,
      auth_uri, token_uri, scope, grant, access_token, refresh_token, redirect_uri,
      api_version, service (`"fno"` gives a finance and operations `FnoConnection`; an
      `*.operations.dynamics.com` Service URL does so by itself).

    No network I/O happens until the first request or `conn.sign_in()`.
    """
    if credential is not None:
        settings.setdefault("grant", "credential")
    resolved = Settings.resolve(connection_string, profile=profile, **settings)
    if resolved.service == "fno":  # finance and operations apps (issue 23)
        return FnoConnection(
            resolved,
            verify=resolved.ca_cert if verify is True and resolved.ca_cert else verify,
            credential=credential,
            token_cache=token_cache,
            timeout=timeout,
            max_concurrency=max_concurrency,
            retry=retry,
            metadata_cache=metadata_cache,
        )
    return Connection(
        resolved,
        verify=resolved.ca_cert if verify is True and resolved.ca_cert else verify,
        credential=credential,
        token_cache=token_cache,
        timeout=timeout,
        max_concurrency=max_concurrency,
        retry=retry,
        metadata_cache=True if metadata_cache is None else metadata_cache,
    )
