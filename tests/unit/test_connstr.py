"""The vendor driver's `Key=Value;` connection strings: examples and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from d365nb._config import Settings
from d365nb._connstr import _KEY_SPELLINGS, format_connection_string, parse_connection_string
from d365nb._exceptions import ConfigError
from d365nb._fields import FIELDS

TENANT = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
CLIENT = "11112222-bbbb-3333-cccc-4444dddd5555"
ORG = "https://org.crm.dynamics.com"
API = "https://org.api.crm.dynamics.com/api/data/v9.1/"
TOKEN = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"

fast = settings(deadline=None, database=None, max_examples=150)


# -- the vendor guide's forms --------------------------------------------------------------


def test_vendor_driver_example():
    text = (
        f"ServiceURL={API};ClientID={CLIENT};ClientSecret=sampleCredentia1s;"
        f"TokenURI=POST {TOKEN};Scope={ORG}/.default;"
    )
    assert parse_connection_string(text) == {
        "service_url": API,
        "client_id": CLIENT,
        "client_secret": "sampleCredentia1s",
        "token_uri": f"POST {TOKEN}",
        "scope": f"{ORG}/.default",
    }
    settings = Settings.from_connection_string(text)
    assert settings.token_uri == TOKEN  # the POST prefix is stripped
    assert settings.grant == "client_credentials"
    assert settings.resource == ORG
    assert settings.api_root == API
    assert settings.authority == f"https://login.microsoftonline.com/{TENANT}"


@pytest.mark.parametrize(
    "prefix",
    [
        "jdbc:datadirect:dynamics365:",
        "JDBC:DataDirect:Dynamics365:",
        "  jdbc:datadirect:dynamics365:",
    ],
)
def test_jdbc_url_form(prefix: str):
    text = (
        f"{prefix}ServiceURL={API};AuthenticationMethod=OAuth2;ClientID={CLIENT};"
        f"ClientSecret=s;TokenURI=POST {TOKEN};Scope={ORG}/.default;"
    )
    settings = Settings.from_connection_string(text)
    assert settings.service_url == API
    assert settings.client_secret == "s"


@pytest.mark.parametrize("method", ["OAuth2", "oauth2", "24", " OAuth2 "])
def test_authentication_method_oauth2_is_accepted_and_dropped(method: str):
    assert parse_connection_string(f"ServiceURL={ORG};AuthenticationMethod={method}") == {
        "service_url": ORG
    }


@pytest.mark.parametrize("method", ["UserIDPassword", "1", "none"])
def test_other_authentication_methods_are_rejected(method: str):
    with pytest.raises(ConfigError) as info:
        parse_connection_string(f"ServiceURL={ORG};AuthenticationMethod={method};")
    assert info.value.field == "authentication_method"
    assert "OAuth2" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("ServiceURL", "service_url"),
        ("OrganizationURL", "service_url"),
        ("Service URL", "service_url"),
        ("service_url", "service_url"),
        ("AuthURI", "auth_uri"),
        ("OAuthAuthorizationURL", "auth_uri"),
        ("TokenURI", "token_uri"),
        ("OAuthAccessTokenURL", "token_uri"),
        ("ClientID", "client_id"),
        ("OAuthClientId", "client_id"),
        ("Client Id", "client_id"),
        ("ClientSecret", "client_secret"),
        ("OAuthClientSecret", "client_secret"),
        ("Scope", "scope"),
        ("AccessToken", "access_token"),
        ("OAuthAccessToken", "access_token"),
        ("RefreshToken", "refresh_token"),
        ("OAuthRefreshToken", "refresh_token"),
        ("TenantID", "tenant"),
        ("Tenant", "tenant"),
        ("AzureTenant", "tenant"),
        ("RedirectURI", "redirect_uri"),
        ("CallbackURL", "redirect_uri"),
        ("Grant", "grant"),
        ("GrantType", "grant"),
        ("OAuthGrantType", "grant"),
        ("APIVersion", "api_version"),
        ("api-version", "api_version"),
    ],
)
def test_key_spellings(key: str, field: str):
    for spelling in (key, key.upper(), key.lower(), key.swapcase()):
        assert parse_connection_string(f"{spelling}=value") == {field: "value"}


def test_quoting_and_spacing():
    text = (
        " ServiceURL = https://org.crm.dynamics.com ;;"
        ' ClientSecret = "a;b=c ""quoted"" " ;'
        " AccessToken='it''s;here' ;"
        " RefreshToken={x;y}}z};"
        " Scope=a=b==;"
        "\n TenantID =\tcontoso.onmicrosoft.com"
    )
    assert parse_connection_string(text) == {
        "service_url": ORG,
        "client_secret": 'a;b=c "quoted" ',
        "access_token": "it's;here",
        "refresh_token": "x;y}z",
        "scope": "a=b==",
        "tenant": "contoso.onmicrosoft.com",
    }


def test_empty_and_blank_strings():
    assert parse_connection_string("") == {}
    assert parse_connection_string(" ; ;; ") == {}
    assert parse_connection_string("Scope=;") == {"scope": ""}


def test_same_key_twice_with_same_value_is_fine():
    assert parse_connection_string(f"ServiceURL={ORG};OrganizationURL={ORG}") == {
        "service_url": ORG
    }


@pytest.mark.parametrize(
    ("text", "field", "hint_text"),
    [
        ("ServiceURL=a;OrganizationURL=b", "service_url", "ServiceURL"),
        ("ClientIdd=x", "ClientIdd", "Did you mean ClientID?"),
        ("OAuthClientSecrt=x", "OAuthClientSecrt", "Did you mean OAuthClientSecret?"),
        ("Srvice URL=x", "Srvice URL", "Did you mean ServiceURL?"),
        ("Zzzqqq=x", "Zzzqqq", "Known settings"),
        ('ClientSecret="abc', "client_secret", '"'),
        ("ClientSecret='abc", "client_secret", "'"),
        ('ClientSecret="abc" d;', "client_secret", "closing"),
        ("ServiceURL", "connection_string", "Key=Value"),
        (f"ServiceURL={ORG};junk;", "connection_string", "Key=Value"),
    ],
)
def test_parse_errors(text: str, field: str, hint_text: str):
    with pytest.raises(ConfigError) as info:
        parse_connection_string(text)
    assert info.value.field == field
    assert hint_text in (info.value.hint or "")


@pytest.mark.parametrize(
    "text",
    [
        "ClientSecret=abc;tail=rest;ServiceURL=x",  # ';' in an unquoted secret
        "AccessToken=abc;tail;ServiceURL=x",
    ],
)
def test_unquoted_secret_with_semicolon_is_not_echoed(text: str):
    with pytest.raises(ConfigError) as info:
        parse_connection_string(text)
    assert "tail" not in str(info.value)
    assert "abc" not in str(info.value)
    assert "quotes" in (info.value.hint or "")


# -- properties ----------------------------------------------------------------------------

values_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=40)
tricky_text = st.one_of(
    values_text,
    st.lists(st.sampled_from(['"', "'", ";", "=", " ", "{", "}", "a", "\t", "\n", "é", "\\"]),
             max_size=20).map("".join),
)  # fmt: skip
field_maps = st.dictionaries(st.sampled_from(FIELDS), tricky_text, max_size=len(FIELDS))


@fast
@given(field_maps)
def test_parse_inverts_format(values: dict[str, str]):
    assert parse_connection_string(format_connection_string(values)) == values


@st.composite
def spelled(draw: st.DrawFn) -> tuple[str, str, str]:
    """A (raw text, field, value) with a random spelling, case and spacing of the key."""
    field = draw(st.sampled_from(FIELDS))
    key = draw(st.sampled_from((*_KEY_SPELLINGS[field], field)))
    key = "".join(ch.upper() if draw(st.booleans()) else ch.lower() for ch in key)
    value = draw(st.text(alphabet="abcXYZ019-_./:~+@", min_size=1, max_size=20))
    pad = st.sampled_from(["", " ", "  ", "\t"])
    quote = draw(st.sampled_from(["", '"', "'"]))
    raw = f"{draw(pad)}{key}{draw(pad)}={draw(pad)}{quote}{value}{quote}{draw(pad)}"
    return raw, field, value


@fast
@given(st.lists(spelled(), min_size=1, max_size=6, unique_by=lambda t: t[1]),
       st.sampled_from([";", " ; ", ";;"]), st.booleans())  # fmt: skip
def test_case_spacing_and_quotes_do_not_matter(parts, separator: str, trailing: bool):
    text = separator.join(raw for raw, _, _ in parts) + (";" if trailing else "")
    assert parse_connection_string(text) == {field: value for _, field, value in parts}


@fast
@given(st.text(max_size=80))
def test_parser_fails_only_with_config_error(text: str):
    try:
        result = parse_connection_string(text)
    except ConfigError as err:
        assert err.hint
    else:
        assert set(result) <= set(FIELDS)
