"""Settings: derivations, rejections, sources, precedence and secrecy."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from d365nb._analysis import check_fields
from d365nb._config import Settings, chosen_grant
from d365nb._exceptions import ConfigError
from d365nb._fields import FIELDS, SECRET_FIELDS, redact

TENANT = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
PUBLIC = "00001111-aaaa-2222-bbbb-3333cccc4444"
CONFIDENTIAL = "11112222-bbbb-3333-cccc-4444dddd5555"
ORG = "https://org.crm.dynamics.com"
API = "https://org.api.crm.dynamics.com/api/data/v9.2/"
V2_TOKEN = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
V1_TOKEN = f"https://login.microsoftonline.com/{TENANT}/oauth2/token"

# Distinctive values that must never show up in any text d365nb produces.
SECRET = "S3cr3t~Zebra.991_xyz"
ACCESS = "eyJ0eXAi.AccessTok-Quokka-4242"
REFRESH = "0.ARefresh-Narwhal-7777"
ALL_SECRETS = (SECRET, ACCESS, REFRESH)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("D365NB_"):
            monkeypatch.delenv(key)


def user(**kw: str) -> Settings:
    return Settings(**{"service_url": API, "client_id": PUBLIC, **kw})


# -- service URL derivations --------------------------------------------------------------


@pytest.mark.parametrize(
    ("service_url", "resource", "api_root", "org_url"),
    [
        (API, ORG, API, ORG),
        (ORG, ORG, f"{ORG}/api/data/v9.2/", ORG),
        (f"{ORG}/", ORG, f"{ORG}/api/data/v9.2/", ORG),
        ("  https://org.crm.dynamics.com  ", ORG, f"{ORG}/api/data/v9.2/", ORG),
        ("https://ORG.CRM.Dynamics.com/api/data/v9.1", ORG, f"{ORG}/api/data/v9.1/", ORG),
        ("https://org.crm.dynamics.com:443/", ORG, f"{ORG}/api/data/v9.2/", ORG),
        (
            "https://org.api.crm.dynamics.com",
            ORG,
            "https://org.api.crm.dynamics.com/api/data/v9.2/",
            ORG,
        ),
        (
            "https://org.api.crm4.dynamics.com/api/data/v9.2/",
            "https://org.crm4.dynamics.com",
            "https://org.api.crm4.dynamics.com/api/data/v9.2/",
            "https://org.crm4.dynamics.com",
        ),
        (
            "https://org.crm11.dynamics.com",
            "https://org.crm11.dynamics.com",
            "https://org.crm11.dynamics.com/api/data/v9.2/",
            "https://org.crm11.dynamics.com",
        ),
        (
            "https://gov.api.crm9.dynamics.com/api/data/v9.2/",
            "https://gov.crm9.dynamics.com",
            "https://gov.api.crm9.dynamics.com/api/data/v9.2/",
            "https://gov.crm9.dynamics.com",
        ),
        (
            "https://high.api.crm.microsoftdynamics.us/api/data/v9.2/",
            "https://high.crm.microsoftdynamics.us",
            "https://high.api.crm.microsoftdynamics.us/api/data/v9.2/",
            "https://high.crm.microsoftdynamics.us",
        ),
        (
            "https://dod.crm.appsplatform.us",
            "https://dod.crm.appsplatform.us",
            "https://dod.crm.appsplatform.us/api/data/v9.2/",
            "https://dod.crm.appsplatform.us",
        ),
        (
            "https://cn.api.crm.dynamics.cn/api/data/v9.0/",
            "https://cn.crm.dynamics.cn",
            "https://cn.api.crm.dynamics.cn/api/data/v9.0/",
            "https://cn.crm.dynamics.cn",
        ),
        (
            "https://crm.contoso.com/api/data/v9.0/",
            "https://crm.contoso.com",
            "https://crm.contoso.com/api/data/v9.0/",
            "https://crm.contoso.com",
        ),
        (
            "https://crm.contoso.local/contoso/api/data/v9.1/",
            "https://crm.contoso.local",
            "https://crm.contoso.local/contoso/api/data/v9.1/",
            "https://crm.contoso.local/contoso",
        ),
        (
            "https://127.0.0.1:8443/api/data/v9.2/",
            "https://127.0.0.1:8443",
            "https://127.0.0.1:8443/api/data/v9.2/",
            "https://127.0.0.1:8443",
        ),
        (
            "https://localhost:9443",
            "https://localhost:9443",
            "https://localhost:9443/api/data/v9.2/",
            "https://localhost:9443",
        ),
    ],
)
def test_service_url_derivations(service_url: str, resource: str, api_root: str, org_url: str):
    settings = user(service_url=service_url)
    assert settings.resource == resource
    assert settings.api_root == api_root
    assert settings.api_root.endswith("/")
    assert settings.org_url == org_url
    assert settings.scopes == (f"{resource}/user_impersonation", "offline_access")


@pytest.mark.parametrize(
    ("service_url", "api_version", "api_root", "effective"),
    [
        (ORG, None, f"{ORG}/api/data/v9.2/", "9.2"),
        (ORG, "9.0", f"{ORG}/api/data/v9.0/", "9.0"),
        (ORG, "v9.1", f"{ORG}/api/data/v9.1/", "9.1"),
        ("https://org.api.crm.dynamics.com/api/data/v9.1/", None, None, "9.1"),
        ("https://org.api.crm.dynamics.com/api/data/v9.1/", "9.1", None, "9.1"),
    ],
)
def test_api_version(service_url: str, api_version: str | None, api_root: str | None, effective):
    settings = user(
        service_url=service_url, **({"api_version": api_version} if api_version else {})
    )
    assert settings.api_version == effective
    assert settings.api_root == (api_root or service_url)


# -- endpoints, version, authority, tenant -------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "version", "authority", "tenant_id", "token_uri", "auth_uri"),
    [
        (
            {"token_uri": V2_TOKEN},
            "v2",
            f"https://login.microsoftonline.com/{TENANT}",
            TENANT,
            V2_TOKEN,
            f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize",
        ),
        (
            {"token_uri": f"POST {V2_TOKEN}"},
            "v2",
            f"https://login.microsoftonline.com/{TENANT}",
            TENANT,
            V2_TOKEN,
            f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize",
        ),
        (
            {"token_uri": f"  post   {V1_TOKEN}"},
            "v1",
            f"https://login.microsoftonline.com/{TENANT}",
            TENANT,
            V1_TOKEN,
            f"https://login.microsoftonline.com/{TENANT}/oauth2/authorize",
        ),
        (
            {
                "auth_uri": "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/authorize"
            },
            "v1",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com",
            "contoso.onmicrosoft.com",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/token",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/authorize",
        ),
        (
            {"auth_uri": f"GET https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize"},
            "v2",
            f"https://login.microsoftonline.com/{TENANT}",
            TENANT,
            V2_TOKEN,
            f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize",
        ),
        (
            {"tenant": TENANT},
            "v2",
            f"https://login.microsoftonline.com/{TENANT}",
            TENANT,
            V2_TOKEN,
            f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize",
        ),
        (
            {},
            "v2",
            "https://login.microsoftonline.com/organizations",
            "organizations",
            "https://login.microsoftonline.com/organizations/oauth2/v2.0/token",
            "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize",
        ),
        (
            {"token_uri": "https://adfs.contoso.com/adfs/oauth2/token"},
            "v1",
            "https://adfs.contoso.com/adfs",
            "adfs",
            "https://adfs.contoso.com/adfs/oauth2/token",
            "https://adfs.contoso.com/adfs/oauth2/authorize",
        ),
        (
            {"token_uri": V2_TOKEN, "tenant": TENANT.upper()},
            "v2",
            f"https://login.microsoftonline.com/{TENANT}",
            TENANT,
            V2_TOKEN,
            f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize",
        ),
    ],
)
def test_endpoint_derivations(fields, version, authority, tenant_id, token_uri, auth_uri):
    settings = user(**fields)
    assert settings.version == version
    assert settings.authority == authority
    assert settings.tenant_id == tenant_id
    assert settings.token_uri == token_uri
    assert settings.auth_uri == auth_uri


@pytest.mark.parametrize(
    ("service_url", "login"),
    [
        (API, "https://login.microsoftonline.com"),
        ("https://org.crm4.dynamics.com", "https://login.microsoftonline.com"),
        ("https://gov.crm9.dynamics.com", "https://login.microsoftonline.com"),
        ("https://high.crm.microsoftdynamics.us", "https://login.microsoftonline.us"),
        ("https://dod.api.crm.appsplatform.us/api/data/v9.2/", "https://login.microsoftonline.us"),
        ("https://cn.crm.dynamics.cn", "https://login.chinacloudapi.cn"),
        ("https://127.0.0.1:8443/api/data/v9.2/", "https://127.0.0.1:8443"),
    ],
)
def test_authority_host_follows_the_cloud_of_the_service_url(service_url: str, login: str):
    settings = user(service_url=service_url, tenant=TENANT)
    assert settings.authority == f"{login}/{TENANT}"
    assert settings.token_uri == f"{login}/{TENANT}/oauth2/v2.0/token"
    assert settings.auth_uri == f"{login}/{TENANT}/oauth2/v2.0/authorize"


# -- grants and scopes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "grant"),
    [
        ({}, "device_code"),
        ({"access_token": ACCESS}, "access_token"),
        ({"access_token": ACCESS, "refresh_token": REFRESH}, "access_token"),
        ({"refresh_token": REFRESH}, "refresh_token"),
        ({"refresh_token": REFRESH, "client_secret": SECRET}, "refresh_token"),
        ({"client_secret": SECRET, "tenant": TENANT}, "client_credentials"),
        ({"client_secret": SECRET, "scope": f"{ORG}/user_impersonation"}, "auth_code"),
        ({"client_secret": SECRET, "grant": "device_code"}, "device_code"),
        ({"grant": "auth_code"}, "auth_code"),
        ({"grant": "authorization_code"}, "auth_code"),
        (
            {"grant": "Client Credentials Grant", "client_secret": SECRET, "tenant": TENANT},
            "client_credentials",
        ),  # fmt: skip
        ({"grant": "CLIENT", "client_secret": SECRET, "tenant": TENANT}, "client_credentials"),
        ({"grant": "access token flow", "access_token": ACCESS}, "access_token"),
        ({"grant": "Refresh-Token", "refresh_token": REFRESH}, "refresh_token"),
        ({"grant": "device code"}, "device_code"),
    ],
)
def test_grant_resolution(fields: dict[str, str], grant: str):
    assert user(**fields).grant == grant


# The vendor guide's connection strings (DataDirect "Connecting to hosted Dynamics 365 with
# OAuth2"), exactly as written: each means one grant, and none is refused.
GUIDE_API = "https://mywebinstance.api.crm.dynamics.com/api/data/v9.1/"
GUIDE_USER_SCOPE = "https://mywebinstance.api.crm.dynamics.com/user_impersonation offline_access"
GUIDE_BASE = f"ServiceURL={GUIDE_API};ClientID={CONFIDENTIAL};"
GUIDE_ROWS = [
    ("configuration-manager-v2", f"{GUIDE_BASE}ClientSecret={SECRET};TokenURI=POST {V2_TOKEN};"
     f"Scope={GUIDE_USER_SCOPE};", "auth_code", "user scope"),
    ("configuration-manager-v1", f"{GUIDE_BASE}ClientSecret={SECRET};TokenURI=POST {V1_TOKEN};"
     f"Scope={GUIDE_USER_SCOPE};", "auth_code", "user scope"),
    ("access-token-flow", f"{GUIDE_BASE}ClientSecret={SECRET};TokenURI=POST {V2_TOKEN};"
     f"Scope={GUIDE_USER_SCOPE};AccessToken={ACCESS};RefreshToken={REFRESH};", "access_token",
     "refresh token renews"),
    ("refresh-token-grant", f"{GUIDE_BASE}ClientSecret={SECRET};TokenURI=POST {V2_TOKEN};"
     f"Scope={GUIDE_USER_SCOPE};RefreshToken={REFRESH};", "refresh_token", "refresh-token"),
    ("client-credentials", f"{GUIDE_BASE}ClientSecret={SECRET};TokenURI=POST {V2_TOKEN};",
     "client_credentials", "client credentials"),
    ("client-credentials-default-scope", f"{GUIDE_BASE}ClientSecret={SECRET};"
     f"TokenURI=POST {V2_TOKEN};Scope=https://mywebinstance.api.crm.dynamics.com/.default;",
     "client_credentials", "client credentials"),
    ("client-credentials-v1", f"{GUIDE_BASE}ClientSecret={SECRET};TokenURI=POST {V1_TOKEN};",
     "client_credentials", "client credentials"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "grant", "reason"), [r[1:] for r in GUIDE_ROWS], ids=[r[0] for r in GUIDE_ROWS]
)
def test_vendor_guide_connection_strings_mean_their_grant(text: str, grant: str, reason: str):
    settings = Settings.from_connection_string(text)
    assert settings.grant == grant
    assert reason in settings.grant_reason
    _assert_no_secret(settings.grant_reason, *settings.notes)


def test_scope_on_v1_is_ignored_with_a_note():
    settings = user(token_uri=V1_TOKEN, scope=f"{ORG}/user_impersonation offline_access")
    assert settings.version == "v1"
    assert settings.scope == f"{ORG}/user_impersonation offline_access"  # kept as given
    assert settings.scopes == (f"{ORG}/user_impersonation", "offline_access")
    (note,) = settings.notes
    assert note.startswith("scope is not used") and ORG in note
    assert user(token_uri=V2_TOKEN).notes == ()


def test_notebook_display_says_the_grant_why_and_the_notes():
    settings = user(token_uri=V1_TOKEN, client_secret=SECRET, scope=f"{ORG}/user_impersonation")
    shown = settings._repr_html_()
    assert "auth_code" in shown and "confidential app" in shown and "scope is not used" in shown
    assert SECRET not in shown and "&lt;set&gt;" in shown


def test_grant_reason_says_when_the_grant_was_chosen():
    assert "choose grant auth_code" in user(grant="auth_code").grant_reason
    assert "device code" in user().grant_reason


def test_access_token_grant_needs_no_client_id():
    settings = Settings(service_url=ORG, access_token=ACCESS)
    assert settings.grant == "access_token"
    assert settings.client_id is None


@pytest.mark.parametrize(
    ("fields", "scopes"),
    [
        ({}, (f"{ORG}/user_impersonation", "offline_access")),
        ({"client_secret": SECRET, "tenant": TENANT}, (f"{ORG}/.default",)),
        (
            {"scope": f"  {ORG}/user_impersonation   offline_access openid "},
            (f"{ORG}/user_impersonation", "offline_access", "openid"),
        ),
        ({"scope": f"{ORG}/.default"}, (f"{ORG}/.default",)),
        (
            {"scope": f"{ORG}/.default", "client_secret": SECRET, "tenant": TENANT},
            (f"{ORG}/.default",),
        ),  # fmt: skip
    ],
)
def test_scopes(fields: dict[str, str], scopes: tuple[str, ...]):
    assert user(**fields).scopes == scopes


def test_redirect_uri_accepts_loopback_http_and_https():
    assert user(redirect_uri="http://localhost").redirect_uri == "http://localhost"
    assert user(redirect_uri="http://127.0.0.1:5000/cb").redirect_uri == "http://127.0.0.1:5000/cb"
    assert user(redirect_uri="https://app.contoso.com/cb").redirect_uri is not None


# -- rejections ----------------------------------------------------------------------------

CC = {"client_secret": SECRET, "grant": "client_credentials"}

REJECTIONS = [
    # (id, fields (service_url/client_id defaults from `user`), field, text in message+hint)
    ("http-service", {"service_url": "http://org.crm.dynamics.com"}, "service_url",
     "https://org.crm.dynamics.com"),
    ("http-sandbox", {"service_url": "http://127.0.0.1:8443/api/data/v9.2/"}, "service_url",
     "https"),
    ("no-scheme", {"service_url": "org.crm.dynamics.com"}, "service_url",
     "https://org.crm.dynamics.com"),
    ("page-url", {"service_url": f"{ORG}/main.aspx?appid=1&pagetype=entitylist"}, "service_url",
     f"without the page path: {ORG}"),
    ("table-url", {"service_url": f"{ORG}/api/data/v9.2/accounts"}, "service_url",
     f"{ORG}/api/data/v9.2/"),
    ("no-version", {"service_url": f"{ORG}/api/data/"}, "service_url", f"{ORG}/api/data/v9.2/"),
    ("generic-bare", {"service_url": "https://crm.contoso.com"}, "service_url", "/api/data/v9.2/"),
    ("login-host", {"service_url": "https://login.microsoftonline.com/x/oauth2/v2.0/token"},
     "service_url", "token_uri"),
    ("query", {"service_url": f"{ORG}/?x=1"}, "service_url", "'?'"),
    ("old-api", {"service_url": f"{ORG}/api/data/v8.2/"}, "service_url", "v9.2"),
    ("missing-service", {"service_url": None}, "service_url", "required"),
    ("api-version", {"service_url": ORG, "api_version": "9.3"}, "api_version", "9.2"),
    ("api-version-10", {"service_url": ORG, "api_version": "10"}, "api_version", "9.0"),
    ("api-version-conflict", {"api_version": "9.1"}, "api_version", "v9.2"),
    ("client-id", {"client_id": "not-a-guid"}, "client_id", "Application (client) ID"),
    ("client-id-braces", {"client_id": "{" + PUBLIC + "}"}, "client_id", "braces"),
    ("missing-client-id", {"client_id": None}, "client_id", "required"),
    ("tenant-format", {"tenant": "not a tenant!"}, "tenant", "Tenant ID"),
    ("tenant-consumers", {"tenant": "consumers"}, "tenant", "personal"),
    ("tenant-mismatch", {"tenant": "contoso.onmicrosoft.com", "token_uri": V2_TOKEN}, "tenant",
     TENANT),
    ("http-token", {"token_uri": V2_TOKEN.replace("https", "http")}, "token_uri", "https"),
    ("token-is-authorize", {"token_uri": V2_TOKEN.replace("token", "authorize")}, "token_uri",
     "/token"),
    ("token-is-devicecode", {"token_uri": V2_TOKEN.replace("token", "devicecode")}, "token_uri",
     "devicecode"),
    ("token-not-endpoint", {"token_uri": "https://login.microsoftonline.com/"}, "token_uri",
     "oauth2/v2.0/token"),
    ("token-placeholder", {"token_uri": "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"},
     "token_uri", "Replace {tenant}"),
    ("auth-placeholder", {"auth_uri": "https://login.microsoftonline.com/<tenant-id>/oauth2/authorize"},
     "auth_uri", "directory (tenant) ID"),
    ("token-get", {"token_uri": f"GET {V2_TOKEN}"}, "token_uri", "POST"),
    ("resource-on-v2", {"token_uri": f"{V2_TOKEN}?resource={ORG}"}, "token_uri", "AADSTS901002"),
    ("auth-version", {"token_uri": V2_TOKEN,
                      "auth_uri": f"https://login.microsoftonline.com/{TENANT}/oauth2/authorize"},
     "auth_uri", "/oauth2/v2.0/authorize"),
    ("auth-tenant", {"token_uri": V2_TOKEN,
                     "auth_uri": "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"},
     "auth_uri", TENANT),
    ("v1-resource-as-scope", {"scope": f"{ORG}/"}, "scope", f"{ORG}/user_impersonation"),
    ("v1-resource-as-scope-bare", {"scope": ORG}, "scope", f"{ORG}/.default"),
    ("scope-without-resource", {"scope": "user_impersonation"}, "scope",
     f"{ORG}/user_impersonation"),
    ("scope-commas", {"scope": f"{ORG}/user_impersonation,offline_access"}, "scope", "spaces"),
    ("cc-delegated-scope", {**CC, "tenant": TENANT, "scope": f"{ORG}/user_impersonation"},
     "scope", f"{ORG}/.default"),
    ("cc-common", {**CC, "token_uri": V2_TOKEN.replace(TENANT, "common")}, "token_uri",
     "AADSTS50059"),
    ("cc-organizations", {**CC, "token_uri": V2_TOKEN.replace(TENANT, "organizations")},
     "token_uri", "tenant"),
    ("cc-tenant-common", {**CC, "tenant": "common"}, "tenant", "tenant"),
    ("cc-no-tenant", {**CC}, "tenant", "tenant"),
    ("cc-no-secret", {"grant": "client_credentials", "tenant": TENANT}, "client_secret",
     "D365NB_CLIENT_SECRET"),
    ("at-no-token", {"grant": "access_token"}, "access_token", "D365NB_ACCESS_TOKEN"),
    ("rt-no-token", {"grant": "refresh_token"}, "refresh_token", "D365NB_REFRESH_TOKEN"),
    ("unknown-grant", {"grant": "client_credentails"}, "grant", "Did you mean client_credentials"),
    ("unknown-grant-2", {"grant": "password"}, "grant", "device_code"),
    ("redirect-http", {"redirect_uri": "http://app.contoso.com/cb"}, "redirect_uri",
     "http://localhost"),
    ("not-text", {"api_version": 9.2}, "api_version", "text"),
    ("userinfo", {"service_url": "https://me:pw@org.crm.dynamics.com"}, "service_url", "'@'"),
]  # fmt: skip


def _build(fields: dict[str, object]) -> dict[str, object]:
    values: dict[str, object] = {"service_url": API, "client_id": PUBLIC, **fields}
    return {k: v for k, v in values.items() if v is not None}


@pytest.mark.parametrize(
    ("fields", "field", "text"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_rejections_name_the_field_and_the_fix(fields, field, text):
    with pytest.raises(ConfigError) as info:
        Settings(**_build(fields))  # type: ignore[arg-type]
    err = info.value
    assert err.field == field
    assert err.hint, "every ConfigError says what to do next"
    assert text in f"{err.message} {err.hint}"
    assert isinstance(err, ValueError)
    # A sentence: capitalised, or opening with the field's own name (never "Https://...").
    first_word = err.message.split()[0]
    assert first_word in FIELDS or (first_word[0].isupper() and not first_word.startswith("Http"))


@pytest.mark.parametrize(
    ("fields", "field", "text"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_check_fields_reports_what_construction_raises(fields, field, text):
    values = _build(fields)
    problems = check_fields(values)  # type: ignore[arg-type]
    assert field in problems
    assert text in problems[field]
    with pytest.raises(ConfigError) as info:
        Settings(**values)  # type: ignore[arg-type]
    # Construction raises the first problem check_fields lists (one source of truth).
    assert next(iter(problems)) == info.value.field
    assert problems[field].startswith(info.value.message) or field != info.value.field


def test_construction_mentions_the_other_problems():
    with pytest.raises(ConfigError) as info:
        Settings(service_url="http://org.crm.dynamics.com", client_id="nope", api_version="8")
    assert info.value.field == "service_url"
    assert "client_id" in str(info.value) and "api_version" in str(info.value)


# -- the value object ----------------------------------------------------------------------


def test_frozen_and_keyword_only():
    settings = user()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.client_id = CONFIDENTIAL  # type: ignore[misc]
    with pytest.raises(TypeError):
        Settings(API)  # type: ignore[misc]


def test_equality_and_hash_follow_values():
    a = user(token_uri=f"POST {V2_TOKEN}")
    b = user(token_uri=V2_TOKEN)
    assert a == b and hash(a) == hash(b)
    assert a != user(token_uri=V1_TOKEN)
    # A derived value equals the same value given explicitly.
    assert user() == user(grant="device_code", api_version="9.2")


def test_replace_recomputes_derived_values():
    settings = user(client_secret=SECRET, tenant=TENANT)
    assert settings.grant == "client_credentials"
    assert settings.replace(client_secret=None).grant == "device_code"
    moved = settings.replace(service_url="https://other.api.crm4.dynamics.com/api/data/v9.1/")
    assert moved.resource == "https://other.crm4.dynamics.com"
    assert moved.api_version == "9.1"
    assert moved.scopes == ("https://other.crm4.dynamics.com/.default",)
    assert moved.client_secret == SECRET
    with pytest.raises(ConfigError, match="client_id"):
        settings.replace(clientid=PUBLIC)
    with pytest.raises(ConfigError) as info:
        settings.replace(service_url="http://org.crm.dynamics.com")
    assert info.value.field == "service_url"


def test_partial_settings_are_not_constructible():
    # The panel builds field by field with check_fields(partial=True) instead.
    with pytest.raises(ConfigError) as info:
        Settings()
    assert info.value.field == "service_url"


def test_to_connection_string_round_trip_and_secrets():
    settings = user(
        token_uri=f"POST {V2_TOKEN}",
        client_secret=SECRET,
        scope=f"{ORG}/.default",
        redirect_uri="http://localhost",
    )
    with_secrets = settings.to_connection_string(include_secrets=True)
    assert SECRET in with_secrets
    assert f"TokenURI=POST {V2_TOKEN};" in with_secrets
    assert Settings.from_connection_string(with_secrets) == settings

    without = settings.to_connection_string()
    assert SECRET not in without
    # The grant the secret implied is written out so the string still says what it needs.
    assert "Grant=client_credentials;" in without
    again = Settings.from_connection_string(without, client_secret=SECRET)
    assert again == settings


def test_to_connection_string_with_tokens_from_a_sign_in():
    settings = user(client_secret=SECRET, scope=f"{ORG}/user_impersonation")
    assert settings.grant == "auth_code"
    plain = settings.to_connection_string()
    assert "Grant=auth_code" in plain and SECRET not in plain
    text = settings.to_connection_string(access_token=ACCESS, refresh_token=REFRESH)
    assert f"AccessToken={ACCESS};RefreshToken={REFRESH};" in text
    assert SECRET not in text and "Grant=" not in text
    back = Settings.from_connection_string(text, client_secret=SECRET)
    assert back.grant == "access_token" and back.refresh_token == REFRESH
    chosen = user(grant="device_code").to_connection_string(access_token=ACCESS)
    assert "Grant=device_code" in chosen  # a grant the user chose is kept


def test_to_connection_string_writes_only_what_was_given():
    text = user().to_connection_string()
    assert text == f"ServiceURL={API};ClientID={PUBLIC};"


def test_secrets_lists_present_values():
    assert user().secrets() == ()
    assert user(access_token=ACCESS, refresh_token=REFRESH).secrets() == (ACCESS, REFRESH)
    every = user(client_secret=SECRET, access_token=ACCESS, refresh_token=REFRESH)
    assert set(every.secrets()) == set(ALL_SECRETS)


# -- sources and precedence ----------------------------------------------------------------


def test_from_env_reads_one_variable_per_field():
    environ = {
        "D365NB_SERVICE_URL": API,
        "D365NB_CLIENT_ID": CONFIDENTIAL,
        "D365NB_CLIENT_SECRET": SECRET,
        "D365NB_TOKEN_URI": f"POST {V2_TOKEN}",
        "D365NB_SCOPE": f"{ORG}/.default",
        "D365NB_API_VERSION": "9.2",
        "D365NB_REDIRECT_URI": "",  # empty: not set
        "OTHER": "ignored",
    }
    settings = Settings.from_env(environ)
    assert settings.client_id == CONFIDENTIAL
    assert settings.client_secret == SECRET
    assert settings.grant == "client_credentials"
    assert settings.token_uri == V2_TOKEN
    assert settings.redirect_uri is None


@pytest.mark.parametrize(
    "name",
    ["service_url", "auth_uri", "token_uri", "client_id", "client_secret", "scope",
     "access_token", "refresh_token", "tenant", "redirect_uri", "grant", "api_version",
     "ca_cert"],
)  # fmt: skip
def test_every_field_has_an_environment_variable(name: str):
    values = {
        "service_url": API,
        "auth_uri": f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize",
        "token_uri": V2_TOKEN,
        "client_id": PUBLIC,
        "client_secret": SECRET,
        "scope": f"{ORG}/user_impersonation",
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "tenant": TENANT,
        "redirect_uri": "http://localhost",
        "grant": "auth_code",
        "api_version": "9.2",
        "ca_cert": "/etc/ssl/corporate-ca.pem",
    }
    environ = {"D365NB_SERVICE_URL": API, "D365NB_CLIENT_ID": PUBLIC, "D365NB_GRANT": "device_code"}
    environ["D365NB_" + name.upper()] = values[name]
    assert getattr(Settings.from_env(environ), name) == values[name]


def test_from_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("D365NB_SERVICE_URL", ORG)
    monkeypatch.setenv("D365NB_CLIENT_ID", PUBLIC)
    assert Settings.from_env().resource == ORG


def test_resolve_precedence(tmp_path):
    profiles = tmp_path / "profiles.toml"
    ids = {
        "env": "00000000-0000-4000-8000-000000000001",
        "profile": "00000000-0000-4000-8000-000000000002",
        "string": "00000000-0000-4000-8000-000000000003",
        "field": "00000000-0000-4000-8000-000000000004",
    }
    Settings(service_url=ORG, client_id=ids["profile"]).save_profile("p", path=profiles)
    environ = {
        "D365NB_SERVICE_URL": API,
        "D365NB_CLIENT_ID": ids["env"],
        "D365NB_CONFIG": str(profiles),
        "D365NB_CLIENT_SECRET": SECRET,
        "D365NB_TENANT": TENANT,
    }
    text = f"ClientID={ids['string']};"

    def resolve(connection_string=None, **kw):
        return Settings.resolve(connection_string, environ=environ, **kw)

    assert resolve().client_id == ids["env"]
    assert resolve(profile="p").client_id == ids["profile"]
    assert resolve(text, profile="p").client_id == ids["string"]
    assert resolve(text, profile="p", client_id=ids["field"]).client_id == ids["field"]
    assert resolve(text, profile="p", client_id=None).client_id == ids["string"]
    # Lower layers still fill what higher ones leave out.
    merged = resolve(text, profile="p")
    assert merged.service_url == ORG  # the profile beats the environment
    assert merged.client_secret == SECRET  # only the environment has it
    assert merged.grant == "client_credentials"
    # D365NB_PROFILE names the profile when none is passed.
    assert Settings.from_env({**environ, "D365NB_PROFILE": "p"}).client_id == ids["profile"]


def test_resolve_uses_the_default_profile_only_when_nothing_is_given(tmp_path):
    profiles = tmp_path / "profiles.toml"
    environ = {"D365NB_CONFIG": str(profiles)}
    with pytest.raises(ConfigError):
        Settings.resolve(environ=environ)  # no profile file yet: nothing to fall back on
    Settings(service_url=ORG, client_id=PUBLIC).save_profile("default", path=profiles)
    assert Settings.resolve(environ=environ).client_id == PUBLIC
    # Something given (a field, an environment variable): the default profile stays out.
    with pytest.raises(ConfigError, match="client_id"):
        Settings.resolve(environ=environ, service_url=API)
    with pytest.raises(ConfigError, match="client_id"):
        Settings.resolve(environ={**environ, "D365NB_SERVICE_URL": API})
    assert Settings.resolve(environ=environ, profile="default").client_id == PUBLIC


def test_profile_keeps_the_ca_certificate_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    profiles = tmp_path / "profiles.toml"
    Settings(service_url=ORG, client_id=PUBLIC, ca_cert="ca.pem").save_profile("p", path=profiles)
    loaded = Settings.from_profile("p", path=profiles)
    assert loaded.ca_cert == str(tmp_path / "ca.pem")
    assert "ca_cert" in profiles.read_text()


def test_chosen_grant_reads_what_the_user_wrote(tmp_path):
    profiles = tmp_path / "profiles.toml"
    Settings(service_url=ORG, client_id=PUBLIC, grant="auth_code").save_profile("p", path=profiles)
    environ = {"D365NB_CONFIG": str(profiles)}
    assert chosen_grant(environ=environ) is None
    assert chosen_grant("Grant=device_code;", profile="p", environ=environ) == "device_code"
    assert chosen_grant(profile="p", environ=environ) == "auth_code"
    assert chosen_grant(environ={**environ, "D365NB_PROFILE": "p"}) == "auth_code"
    assert chosen_grant(environ={**environ, "D365NB_GRANT": "refresh_token"}) == "refresh_token"


def test_resolve_rejects_unknown_fields():
    with pytest.raises(ConfigError) as info:
        Settings.resolve(environ={}, service_url=ORG, client_idd=PUBLIC)
    assert info.value.field == "client_idd"
    assert "client_id" in (info.value.hint or "")


# -- secrecy -------------------------------------------------------------------------------


def _assert_no_secret(*texts: object) -> None:
    for text in texts:
        for secret in ALL_SECRETS:
            assert secret not in str(text)


def test_repr_and_str_hide_secrets():
    settings = user(client_secret=SECRET, access_token=ACCESS, refresh_token=REFRESH)
    _assert_no_secret(repr(settings), str(settings), f"{settings}", f"{settings!r}")
    for name in ("client_secret", "access_token", "refresh_token"):
        assert f"{name}=<set>" in repr(settings)
    assert f"client_id={PUBLIC!r}" in repr(settings)
    assert "client_secret" not in repr(user())


def test_logging_a_settings_object_hides_secrets(caplog: pytest.LogCaptureFixture):
    settings = user(client_secret=SECRET, access_token=ACCESS, refresh_token=REFRESH)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("d365nb.test").info("settings %s %r", settings, settings)
    assert caplog.text
    _assert_no_secret(caplog.text)


SECRET_FIELDS_GIVEN = {"client_secret": SECRET, "access_token": ACCESS, "refresh_token": REFRESH}


@pytest.mark.parametrize(
    "fields", [r[1] for r in REJECTIONS if not set(r[1]) & set(SECRET_FIELDS_GIVEN)],
    ids=[r[0] for r in REJECTIONS if not set(r[1]) & set(SECRET_FIELDS_GIVEN)],
)  # fmt: skip
def test_no_error_path_shows_a_secret(fields):
    # Every rejection again, with all three secrets present.  The access token makes the
    # grant `access_token` unless the case names one, so some cases stop failing; every
    # error that is raised must still be clean.
    values = _build({**SECRET_FIELDS_GIVEN, **fields})
    problems = check_fields(values)  # type: ignore[arg-type]
    _assert_no_secret(*problems.values())
    try:
        Settings(**values)  # type: ignore[arg-type]
    except ConfigError as err:
        _assert_no_secret(str(err), repr(err), err.message, err.hint, err.args, err._repr_html_())


@pytest.mark.parametrize(
    "fields",
    [
        # A secret pasted into the wrong field, and the same value as the secret.
        {"client_id": SECRET, "client_secret": SECRET},
        {"tenant": SECRET, "client_secret": SECRET},
        {"grant": ACCESS, "access_token": ACCESS},
        {"api_version": REFRESH, "refresh_token": REFRESH},
        {"scope": f"{ORG}/{SECRET},x", "client_secret": SECRET},
        {"redirect_uri": f"ftp://{SECRET}", "client_secret": SECRET},
        # Secrets inside URLs, plain and URL-encoded.
        {"service_url": f"https://org.crm.dynamics.com/{SECRET}", "client_secret": SECRET},
        {"service_url": f"http://org.crm.dynamics.com/?t={ACCESS}", "access_token": ACCESS},
        {"token_uri": f"{V2_TOKEN}?client_secret={SECRET}", "client_secret": SECRET},
        {"token_uri": f"{V2_TOKEN}#s", "client_secret": "a b/c?d", "tenant": TENANT},
    ],
)
def test_secrets_in_the_wrong_place_are_redacted(fields):
    values = _build(fields)
    with pytest.raises(ConfigError) as info:
        Settings(**values)  # type: ignore[arg-type]
    err = info.value
    hidden = [v for k, v in fields.items() if k in SECRET_FIELDS_GIVEN]
    for text in (str(err), repr(err), err.message, err.hint or "", *check_fields(values).values()):
        for secret in hidden:
            assert secret not in text
            assert redact(secret, [secret]) != secret


def test_duplicate_secret_keys_are_not_echoed():
    text = f"ServiceURL={ORG};ClientID={PUBLIC};ClientSecret={SECRET};OAuthClientSecret={SECRET}x;"
    with pytest.raises(ConfigError) as info:
        Settings.from_connection_string(text)
    assert info.value.field == "client_secret"
    _assert_no_secret(str(info.value))


# -- connection strings (the codec itself: test_connstr.py) ------------------------------


def test_overrides_win_over_the_string():
    text = f"ServiceURL={ORG};ClientID={CONFIDENTIAL};ClientSecret=s;TenantID={TENANT}"
    settings = Settings.from_connection_string(text, grant="device_code", tenant=None)
    assert settings.grant == "device_code"
    assert settings.tenant == TENANT  # None means "not given"
    with pytest.raises(ConfigError):
        Settings.from_connection_string(text, clientid=CONFIDENTIAL)


secret_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
).map(lambda s: "zq\u00a7" + s.rstrip())  # a marker no other text contains


@hsettings(deadline=None, database=None, max_examples=150)
@given(
    st.fixed_dictionaries(
        {},
        optional={name: secret_values for name in SECRET_FIELDS}
        | {
            "scope": st.just(f"{ORG}/user_impersonation offline_access"),
            "tenant": st.sampled_from([TENANT, "contoso.onmicrosoft.com"]),
            "redirect_uri": st.sampled_from(["http://localhost", "https://x.contoso.com/cb"]),
            "api_version": st.sampled_from(["9.0", "9.1", "9.2"]),
            "token_uri": st.sampled_from([V2_TOKEN, f"POST {V2_TOKEN}"]),
        },
    )
)
def test_settings_round_trip_through_connection_strings(extra: dict[str, str]):
    fields = {"service_url": ORG, "client_id": CONFIDENTIAL, "grant": "device_code", **extra}
    if "token_uri" in fields and "tenant" in fields:
        fields["tenant"] = TENANT
    original = Settings(**fields)
    text = original.to_connection_string(include_secrets=True)
    assert Settings.from_connection_string(text) == original
    redacted = original.to_connection_string()
    for secret in original.secrets():
        assert secret not in redacted
    restored = Settings.from_connection_string(
        redacted, **{name: getattr(original, name) for name in SECRET_FIELDS}
    )
    assert restored == original


# -- one source of truth -------------------------------------------------------------------

POOLS: dict[str, list[object]] = {
    "service_url": [None, ORG, API, "https://127.0.0.1:8443/api/data/v9.2/", "http://x.crm.dynamics.com",
                    f"{ORG}/main.aspx", "https://crm.contoso.com/api/data/v9.0/", "https://example.com"],
    "auth_uri": [None, f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize",
                 f"https://login.microsoftonline.com/{TENANT}/oauth2/authorize", "https://x/y"],
    "token_uri": [None, V2_TOKEN, f"POST {V1_TOKEN}", V2_TOKEN.replace(TENANT, "common"),
                  f"{V2_TOKEN}?resource={ORG}", "GET " + V2_TOKEN],
    "client_id": [None, PUBLIC, "not-a-guid", ""],
    "client_secret": [None, SECRET],
    "scope": [None, f"{ORG}/user_impersonation offline_access", f"{ORG}/.default", ORG, "a,b"],
    "access_token": [None, ACCESS],
    "refresh_token": [None, REFRESH],
    "tenant": [None, TENANT, "common", "consumers", "bad tenant"],
    "redirect_uri": [None, "http://localhost", "http://example.com"],
    "grant": [None, *["device_code", "auth_code", "client_credentials", "refresh_token",
                      "access_token"], "nope"],
    "api_version": [None, "9.0", "9.2", "8.0"],
}  # fmt: skip


@hsettings(deadline=None, database=None, max_examples=400)
@given(st.fixed_dictionaries({name: st.sampled_from(pool) for name, pool in POOLS.items()}))
def test_check_fields_is_empty_exactly_when_construction_succeeds(values):
    problems = check_fields(values)
    try:
        built = Settings(**values)
    except ConfigError as err:
        assert err.field in problems
        assert str(err).startswith(problems[err.field].rstrip("."))
        assert next(iter(problems)) == err.field
        assert set(problems) <= set(POOLS)
        _assert_no_secret(str(err), *problems.values())
    else:
        assert problems == {}
        assert built.api_root.endswith("/")
        assert built.grant in ("device_code", "auth_code", "client_credentials", "refresh_token",
                               "access_token")  # fmt: skip
        # Whatever was built survives its own connection string.
        text = built.to_connection_string(include_secrets=True)
        assert Settings.from_connection_string(text) == built
        # And partial checking never finds more than full checking.
    assert set(check_fields(values, partial=True)) <= set(problems)


@hsettings(deadline=None, database=None, max_examples=300)
@given(
    st.sampled_from([n for n in FIELDS if n not in ("client_secret", "access_token",
                                                     "refresh_token")]),
    st.one_of(
        st.text(max_size=60),
        st.builds(lambda a, b: f"https://{a}/{b}", st.text(max_size=20), st.text(max_size=20)),
        st.builds(lambda a: f"POST https://login.microsoftonline.com/{a}/oauth2/v2.0/token",
                  st.text(max_size=20)),
        st.sampled_from(["https://[::1", "https://org.crm.dynamics.com:99999",
                         "https://org.crm.dynamics.com:abc/", "https://", "POST", "v", "{}"]),
    ),
)  # fmt: skip
def test_any_text_in_any_field_fails_only_with_a_clean_config_error(name: str, text: str):
    values = {"service_url": API, "client_id": PUBLIC, "client_secret": SECRET, "tenant": TENANT,
              name: text}  # fmt: skip
    problems = check_fields(values)
    _assert_no_secret(*problems.values())
    try:
        Settings(**values)
    except ConfigError as err:
        assert err.field in problems
        _assert_no_secret(str(err))
    else:
        assert problems == {}
