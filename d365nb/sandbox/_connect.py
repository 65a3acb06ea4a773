"""Connect to a sandbox: a `Connection` configured from its `SandboxInfo`.

The one way from a sandbox description to a client: `d365nb.sandbox.connect()`,
`Sandbox.connect()` and the notebooks all come here.  The client is imported when a
connection is made, so the sandbox's engine never imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._info import SandboxInfo

if TYPE_CHECKING:
    from .._client import Connection

__all__ = ["as_info", "connect", "connect_to"]


def as_info(sandbox: Any) -> SandboxInfo:
    """`sandbox` as a `SandboxInfo`: a `SandboxInfo`, a `Sandbox`, its `info()` dict, or any
    object with the same attributes.

    **Parameters:**

    * **sandbox** - the sandbox's description.
    """
    if isinstance(sandbox, SandboxInfo):
        return sandbox
    if isinstance(sandbox, Mapping):
        return SandboxInfo.from_mapping(sandbox)
    info = getattr(sandbox, "info", None)
    if callable(info):
        described = info()
        return described if isinstance(described, SandboxInfo) else as_info(described)
    return SandboxInfo.from_mapping(vars(sandbox))


def connect(
    sandbox: Any,
    *,
    grant: str = "client_credentials",
    version: str = "v2",
    service: str = "dataverse",
    **settings: Any,
) -> Connection:
    """A connection to `sandbox` with `grant`, using the sandbox's seeded app registrations.

    Client credentials use the confidential client (its application user); every other
    grant uses the public client.  `version="v1"` uses the v1 (`resource=`) endpoints.
    Tokens are kept in memory unless `token_cache=` says otherwise: sandbox ports change
    between starts.

    ```python
    conn = d365nb.sandbox.connect(sb)                        # the application user
    conn = d365nb.sandbox.connect(sb, grant="device_code")   # a person signs in
    ```

    **Parameters:**

    * **sandbox** - a `SandboxInfo`, a `Sandbox` or its `info()` dict.
    * **grant** - the grant type (`client_credentials`, `device_code`, `auth_code`, ...).
    * **version** - `v2` (scopes) or `v1` (`resource=`) identity endpoints.
    * **service** - `"dataverse"` (the Web API) or `"fno"`: the sandbox's finance and
      operations environment (started with `fno=True`); its resource is `<origin>/fno`.
    * **settings** - more `d365nb.connect` arguments (`max_concurrency=`, `retry=`, ...).
    """
    from .._client import connect as connect_client

    info = as_info(sandbox)
    confidential = grant == "client_credentials"
    authority = info.authority or f"{info.base_url}/{info.tenant}"
    service_url = info.service_url
    if service == "fno":
        if not info.fno_service_url:
            from .._exceptions import ConfigError

            raise ConfigError(
                "This sandbox serves no finance and operations environment.",
                field="service",
                hint="Start it with fno=True (d365nb sandbox --fno).",
            )
        service_url = info.fno_service_url
    values: dict[str, Any] = {
        "service_url": service_url,
        "service": service,
        "tenant": info.tenant,
        "client_id": info.confidential_client_id if confidential else info.public_client_id,
        "grant": grant,
        "token_uri": (
            info.token_uri or f"{authority}/oauth2/v2.0/token"
            if version == "v2"
            else f"{info.base_url}/{info.tenant}/oauth2/token"
        ),
        "auth_uri": (
            info.auth_uri or f"{authority}/oauth2/v2.0/authorize"
            if version == "v2"
            else f"{info.base_url}/{info.tenant}/oauth2/authorize"
        ),
    }
    if confidential:
        values["client_secret"] = info.client_secret
    values.setdefault("verify", info.ca_cert)
    values.setdefault("token_cache", False)
    if service == "fno":
        values.setdefault("metadata_cache", False)
    values.update(settings)
    return connect_client(**values)


#: The name tests and benchmarks have used; the same function.
connect_to = connect
