"""Connection settings: one frozen value object, read from every form users meet.

`Settings` holds what the vendor guides call Service URL, Auth URI, Token URI, Client ID,
Client Secret, Scope, Access Token, Refresh Token, tenant and redirect URI.  It is built
from keyword arguments, a connection string in the vendor driver's `Key=Value;` form
(`_connstr.py`), `D365NB_*` environment variables or a saved profile (`_profile.py`).
What can be derived without network I/O (resource, Web API root, v1/v2, authority,
grant, scopes) and every check come from `Analysis` (`_analysis.py`), which the setup
panel uses too, so the two never disagree.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ._analysis import Analysis, Derived
from ._connstr import format_connection_string, parse_connection_string
from ._exceptions import ConfigError
from ._fields import ENV_PREFIX, ENV_PROFILE, FIELDS, SECRET_FIELDS, check_names
from ._profile import default_profile_path, list_profiles, load_profile, write_profile

__all__ = ["DEFAULT_PROFILE", "Settings", "chosen_grant"]

#: The profile used when nothing else is given (`d365nb login` saves it).
DEFAULT_PROFILE = "default"


def _env_values(environ: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in FIELDS:
        value = environ.get(ENV_PREFIX + name.upper())
        if value is not None and value.strip():
            out[name] = value
    return out


def chosen_grant(
    connection_string: str | None = None,
    *,
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The grant the user chose in a connection string, a profile or `D365NB_GRANT`, if any.

    For callers that fill in settings of their own (the CLI's `--sandbox`) and must not
    override the user's choice of grant.  The raw value, as written.
    """
    env = os.environ if environ is None else environ
    if connection_string:
        grant = parse_connection_string(connection_string).get("grant")
        if grant:
            return grant
    profile = profile or (env.get(ENV_PROFILE) or "").strip() or None
    if profile:
        grant = load_profile(profile, path=default_profile_path(env)).get("grant")
        if grant:
            return grant
    return (env.get(ENV_PREFIX + "GRANT") or "").strip() or None


@dataclass(frozen=True, kw_only=True, repr=False)
class Settings:
    """How to reach and sign in to one Dynamics 365 / Dataverse environment.

    Usage:

    ```python
    settings = Settings(service_url="https://contoso.api.crm.dynamics.com/api/data/v9.2/",
                        client_id="00001111-aaaa-2222-bbbb-3333cccc4444")
    settings.resource   # 'https://contoso.crm.dynamics.com'
    settings.grant      # 'device_code'
    settings = Settings.resolve("ServiceURL=...;ClientID=...;TokenURI=POST https://...;")
    ```

    Construction checks everything that can be checked without the network and raises
    `ConfigError` naming the field and the fix.  `service_url` is required, and so is what
    the grant needs (`client_id`; a secret for client credentials; the token for the
    token grants).  Partly filled values are checked with `check_fields(partial=True)`.

    After construction `grant`, `api_version`, `token_uri` and `auth_uri` hold the values
    in effect (given or derived; a leading `POST ` is gone); `replace`, `save_profile`
    and `to_connection_string` carry only what was given, so derived values follow
    changes.  Secrets show as `<set>` in `repr`.

    **Parameters:**

    * **service_url** - the environment URL (`https://org.crm.dynamics.com`) or the Web
      API root (`https://org.api.crm.dynamics.com/api/data/v9.2/`).
    * **auth_uri**, **token_uri** - OAuth endpoints; their shape picks v1 or v2.
    * **client_id**, **client_secret** - the app registration's ID and secret.
    * **scope** - v2 only, space separated; derived from the resource when omitted.
    * **access_token**, **refresh_token** - tokens obtained elsewhere.
    * **tenant** - directory ID or domain, used when no endpoint is given.
    * **redirect_uri** - for the authorization-code grant.
    * **grant** - one of `device_code`, `auth_code`, `client_credentials`,
      `refresh_token`, `access_token`.
    * **api_version** - `9.0`, `9.1` or `9.2` (default), for an environment URL.
    * **ca_cert** - a CA certificate file (PEM) to trust for the service and the sign-in
      service, when their certificates are not publicly trusted (a corporate proxy, the
      sandbox); `connect(verify=...)` wins over it.
    """

    service_url: str | None = None
    auth_uri: str | None = None
    token_uri: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    tenant: str | None = None
    redirect_uri: str | None = None
    grant: str | None = None
    api_version: str | None = None
    ca_cert: str | None = None
    _given: frozenset[str] = field(init=False, compare=False, default=frozenset())
    _derived: Derived = field(init=False, compare=False)

    def __post_init__(self) -> None:
        analysis = Analysis({name: getattr(self, name) for name in FIELDS}, partial=False)
        problems = analysis.scrubbed_problems()
        if problems:
            first = next(iter(problems.values()))
            if len(problems) > 1:
                others = ", ".join(name for name in problems if name != first.field)
                first = ConfigError(
                    first.message,
                    field=first.field,
                    hint=f"{first.hint} (Also check: {others}.)",
                )
            raise first
        derived = analysis.derived
        assert derived is not None
        values = analysis.values
        given = frozenset(name for name in FIELDS if values[name] is not None)
        for name in FIELDS:
            object.__setattr__(self, name, values[name])
        for name in ("grant", "api_version", "token_uri", "auth_uri"):
            object.__setattr__(self, name, getattr(derived, name))
        object.__setattr__(self, "_given", given)
        object.__setattr__(self, "_derived", derived)

    # -- constructors
    @classmethod
    def from_connection_string(cls, text: str, **overrides: str | None) -> Settings:
        """Settings from a vendor-driver connection string, `overrides` on top.

        **Parameters:**

        * **text** - `ServiceURL=...;ClientID=...;TokenURI=POST https://...;` or the JDBC
          URL `jdbc:datadirect:dynamics365:ServiceURL=...;...` (see
          `parse_connection_string`).
        * **overrides** - field values that win over the string; `None` means not given.
        """
        check_names(overrides)
        values: dict[str, str | None] = dict(parse_connection_string(text))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from `D365NB_*` environment variables and the `D365NB_PROFILE` profile.

        One variable per field (`D365NB_SERVICE_URL`, `D365NB_CLIENT_ID`,
        `D365NB_CLIENT_SECRET`, ...); `D365NB_CONFIG` overrides the profile file's path.

        **Parameters:**

        * **environ** - the variables to read; `os.environ` when omitted.
        """
        return cls.resolve(environ=environ)

    @classmethod
    def from_profile(cls, name: str, *, path: str | os.PathLike[str] | None = None) -> Settings:
        """Settings saved under `name` in the profile file.

        **Parameters:**

        * **name** - the profile's name.
        * **path** - the profile file; `D365NB_CONFIG` or the per-user default when omitted.
        """
        return cls(**load_profile(name, path=path))

    @classmethod
    def resolve(
        cls,
        connection_string: str | None = None,
        *,
        profile: str | None = None,
        environ: Mapping[str, str] | None = None,
        **fields: str | None,
    ) -> Settings:
        """Settings from every source, field by field: the normal way in.

        Precedence: explicit `fields` > `connection_string` > profile > environment
        variables.  The profile is `profile`, else the one `D365NB_PROFILE` names, else,
        when nothing at all is given, the profile named `default` if it exists (the one
        `d365nb login` saves).

        **Parameters:**

        * **connection_string** - a vendor-driver connection string, or `None`.
        * **profile** - a saved profile's name.
        * **environ** - the environment to read; `os.environ` when omitted.
        * **fields** - field values; `None` means not given.
        """
        check_names(fields)
        env = os.environ if environ is None else environ
        values: dict[str, str | None] = dict(_env_values(env))
        profile_name = profile or (env.get(ENV_PROFILE) or "").strip() or None
        given = values or connection_string or any(v is not None for v in fields.values())
        if profile_name is None and not given:
            # Nothing given at all: the profile `d365nb login` saves by default, if any.
            if DEFAULT_PROFILE in list_profiles(path=default_profile_path(env)):
                profile_name = DEFAULT_PROFILE
        if profile_name:
            values.update(load_profile(profile_name, path=default_profile_path(env)))
        if connection_string:
            values.update(parse_connection_string(connection_string))
        values.update({k: v for k, v in fields.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: str | None) -> Settings:
        """A copy with `changes` applied (`None` clears a field); derived values follow."""
        check_names(changes)
        values: dict[str, str | None] = {name: getattr(self, name) for name in self._given}
        values.update(changes)
        return type(self)(**values)

    # -- output
    def _given_values(self, *, include_secrets: bool) -> dict[str, str]:
        values: dict[str, str] = {
            name: value
            for name in FIELDS
            if name in self._given
            and (value := getattr(self, name)) is not None
            and (include_secrets or name not in SECRET_FIELDS)
        }
        dropped = any(name in self._given for name in SECRET_FIELDS) and not include_secrets
        if dropped and "grant" not in values:
            # Keep the intent: without the secret, the grant would silently change.
            values["grant"] = self.grant or "device_code"
            values = {name: values[name] for name in FIELDS if name in values}
        return values

    def to_connection_string(
        self,
        *,
        include_secrets: bool = False,
        access_token: str | None = None,
        refresh_token: str | None = None,
    ) -> str:
        """The given settings as a vendor-driver connection string.

        `Settings.from_connection_string` reads it back.  Secrets are left out unless
        asked for; the grant is then written out, so the string still says what it needs.

        **Parameters:**

        * **include_secrets** - also write client_secret, access_token and refresh_token.
        * **access_token**, **refresh_token** - tokens from a sign-in to write as
          `AccessToken=` / `RefreshToken=` (the driver's access-token flow); unless the
          grant was given, it is then left for the tokens to decide.
        """
        values = self._given_values(include_secrets=include_secrets)
        tokens = {"access_token": access_token, "refresh_token": refresh_token}
        if any(tokens.values()):
            if "grant" not in self._given:
                values.pop("grant", None)
            values.update({name: value for name, value in tokens.items() if value})
            values = {name: values[name] for name in FIELDS if name in values}
        if "token_uri" in values:
            values["token_uri"] = "POST " + values["token_uri"]
        return format_connection_string(values)

    def save_profile(self, name: str, *, path: str | os.PathLike[str] | None = None) -> Path:
        """Save the given settings, without secrets or tokens, as profile `name`.

        The file and a folder created for it are readable by their owner only.
        Returns the file's path.

        **Parameters:**

        * **name** - the profile's name; an existing profile of that name is replaced.
        * **path** - the profile file; `D365NB_CONFIG` or the per-user default when omitted.
        """
        values = self._given_values(include_secrets=False)
        if "ca_cert" in values:
            # The profile is read from anywhere: a relative path would break.
            values["ca_cert"] = os.path.abspath(os.path.expanduser(values["ca_cert"]))
        return write_profile(name, values, path=path)

    def secrets(self) -> tuple[str, ...]:
        """The secret values present (client secret, tokens), for `redact`."""
        return tuple(value for name in SECRET_FIELDS if (value := getattr(self, name)))

    def __repr__(self) -> str:
        parts = []
        for name in FIELDS:
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}=<set>" if name in SECRET_FIELDS else f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    __str__ = __repr__

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{name}</code></td><td>"
            + ("&lt;set&gt;" if name in SECRET_FIELDS else html.escape(str(value)))
            + "</td></tr>"
            for name in FIELDS
            if (value := getattr(self, name)) is not None
        )
        notes = "".join(f"<li>{html.escape(note)}</li>" for note in self.notes)
        return (
            f"<div class='d365nb-settings'><table>{rows}</table>"
            f"<p>grant <code>{html.escape(str(self.grant))}</code>: "
            f"{html.escape(self.grant_reason)}</p>"
            + (f"<ul>{notes}</ul>" if notes else "")
            + "</div>"
        )

    # -- derived
    @property
    def resource(self) -> str:
        """The token audience: `https://org.crm.dynamics.com` (no trailing slash)."""
        return self._derived.resource

    @property
    def api_root(self) -> str:
        """The Web API root, ending in `/`: `https://org.api.crm.dynamics.com/api/data/v9.2/`."""
        return self._derived.api_root

    @property
    def org_url(self) -> str:
        """The environment's address (with the organisation path on-premises)."""
        return self._derived.org_url

    @property
    def version(self) -> str:
        """`"v2"` (Microsoft identity platform, `scope=`) or `"v1"` (`resource=`)."""
        return self._derived.version

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes to ask for: `scope` split, or the defaults for the grant.

        On v1 endpoints they are not sent (`resource` is); they are what a migration of a
        v1 refresh token to v2 would ask for.
        """
        return self._derived.scopes

    @property
    def grant_reason(self) -> str:
        """Why `grant` is the grant in effect, in one sentence (the settings say so, or
        which credentials were given)."""
        return self._derived.grant_reason

    @property
    def notes(self) -> tuple[str, ...]:
        """Settings that are given but not used, one sentence each (e.g. scope on v1)."""
        return self._derived.notes

    @property
    def authority(self) -> str:
        """`https://<sign-in host>/<tenant>`, as msal takes it."""
        return self._derived.authority

    @property
    def tenant_id(self) -> str:
        """The tenant in effect: from the endpoints, `tenant`, or `organizations`."""
        return self._derived.tenant_id
