"""The sandbox's directory: the tenant, its users and its app registrations.

Shared by the identity service (who may sign in, with which app) and the Web API (the
`systemusers` rows that WhoAmI returns, the application user bound to the confidential
client).  Identifiers are fixed so that notebooks, docs and tests can name them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "APPS",
    "CONFIDENTIAL_CLIENT_ID",
    "CONFIDENTIAL_CLIENT_SECRET",
    "ORG_ID",
    "ORG_NAME",
    "PUBLIC_CLIENT_ID",
    "ROOT_BUSINESS_UNIT_ID",
    "TENANT_DOMAIN",
    "TENANT_ID",
    "USERS",
    "App",
    "User",
    "app_by_id",
    "user_by_name",
]

TENANT_ID = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
TENANT_DOMAIN = "contoso.onmicrosoft.com"
ORG_ID = "c0ffee00-0000-4000-8000-000000000001"
ORG_NAME = "contoso-sandbox"
ROOT_BUSINESS_UNIT_ID = "b0000000-0000-4000-8000-000000000001"

PUBLIC_CLIENT_ID = "00001111-aaaa-2222-bbbb-3333cccc4444"
CONFIDENTIAL_CLIENT_ID = "11112222-bbbb-3333-cccc-4444dddd5555"
# A sandbox-only credential, published on purpose (like a test fixture); it opens nothing
# outside the sandbox.  Real client secrets never appear in code.
CONFIDENTIAL_CLIENT_SECRET = "sandbox-secret"


@dataclass(frozen=True)
class User:
    """A person in the tenant; `oid` is also the Dataverse `azureactivedirectoryobjectid`."""

    oid: str
    upn: str
    name: str
    systemuserid: str
    business_unit_id: str = ROOT_BUSINESS_UNIT_ID
    # Dataverse security: a user without a role can sign in but gets 403 on reads.
    has_role: bool = True


@dataclass(frozen=True)
class App:
    """An app registration."""

    client_id: str
    name: str
    public: bool
    secret: str | None = None
    redirect_uris: tuple[str, ...] = ()
    # The Dataverse application user bound to this app (confidential clients only).
    application_user_id: str | None = None
    roles: tuple[str, ...] = field(default=())


USERS: tuple[User, ...] = (
    User(
        oid="a1a1a1a1-0000-4000-8000-000000000001",
        upn=f"alex@{TENANT_DOMAIN}",
        name="Alex Wilber",
        systemuserid="5a000000-0000-4000-8000-000000000001",
    ),
    User(
        oid="a1a1a1a1-0000-4000-8000-000000000002",
        upn=f"megan@{TENANT_DOMAIN}",
        name="Megan Bowen",
        systemuserid="5a000000-0000-4000-8000-000000000002",
    ),
    User(
        oid="a1a1a1a1-0000-4000-8000-000000000003",
        upn=f"norole@{TENANT_DOMAIN}",
        name="Nestor Wilke",
        systemuserid="5a000000-0000-4000-8000-000000000003",
        has_role=False,
    ),
)

APPS: tuple[App, ...] = (
    App(
        client_id=PUBLIC_CLIENT_ID,
        name="d365nb sandbox (public client)",
        public=True,
        redirect_uris=("http://localhost", "http://127.0.0.1", "https://localhost/redirect"),
    ),
    App(
        client_id=CONFIDENTIAL_CLIENT_ID,
        name="d365nb sandbox (confidential client)",
        public=False,
        secret=CONFIDENTIAL_CLIENT_SECRET,
        redirect_uris=("http://localhost", "http://127.0.0.1", "https://localhost/redirect"),
        application_user_id="5a000000-0000-4000-8000-0000000000a1",
        # App tokens carry `roles` (the Web API refuses role-less app tokens).  Dataverse
        # itself defines no app roles, so the name is the sandbox's own [UNVERIFIED].
        roles=("Dataverse.ApplicationUser",),
    ),
)


def user_by_name(name: str) -> User:
    """The user whose UPN or UPN's local part is `name` (``alex`` or ``alex@contoso...``)."""
    for user in USERS:
        if name.lower() in (user.upn.lower(), user.upn.split("@")[0].lower(), user.oid):
            return user
    raise KeyError(name)


def app_by_id(client_id: str) -> App | None:
    """The app registration with this client id, or None."""
    for app in APPS:
        if app.client_id == client_id.lower():
            return app
    return None
