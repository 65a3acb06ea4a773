"""Analysis: normalising, checking and deriving settings without building them."""

from __future__ import annotations

from d365nb._analysis import Analysis, check_fields

TENANT = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
PUBLIC = "00001111-aaaa-2222-bbbb-3333cccc4444"
ORG = "https://org.crm.dynamics.com"
API = "https://org.api.crm.dynamics.com/api/data/v9.2/"
V1_TOKEN = f"https://login.microsoftonline.com/{TENANT}/oauth2/token"


# -- check_fields -------------------------------------------------------------------------


def test_check_fields_all_good_is_empty():
    assert check_fields({"service_url": API, "client_id": PUBLIC}) == {}
    assert (
        check_fields({"service_url": ORG, "client_id": PUBLIC, "tenant": "", "scope": None}) == {}
    )


def test_check_fields_partial_skips_missing_but_not_malformed():
    assert "client_id" in check_fields({"service_url": ORG})
    assert check_fields({"service_url": ORG}, partial=True) == {}
    assert check_fields({}, partial=True) == {}
    assert check_fields({"grant": "client_credentials"}, partial=True) == {}
    problems = check_fields({"service_url": "http://x.crm.dynamics.com", "client_id": "1"},
                            partial=True)  # fmt: skip
    assert set(problems) == {"service_url", "client_id"}


def test_check_fields_reports_every_wrong_field():
    problems = check_fields(
        {
            "service_url": "http://org.crm.dynamics.com",
            "client_id": "x",
            "api_version": "7",
            "grant": "nope",
            "redirect_uri": "ftp://x",
            "tenant": "?",
        }
    )
    assert set(problems) == {"service_url", "client_id", "api_version", "grant", "redirect_uri",
                             "tenant"}  # fmt: skip
    assert all(isinstance(text, str) and text for text in problems.values())


def test_check_fields_unknown_key_did_you_mean():
    problems = check_fields({"service_url": API, "client_id": PUBLIC, "clientid": PUBLIC})
    assert "client_id" in problems["clientid"]


# -- Analysis ------------------------------------------------------------------------------


def test_analysis_normalises_values_as_typed():
    analysis = Analysis({"grant": "Authorization Code", "token_uri": f"POST {V1_TOKEN}",
                         "api_version": "v9.1", "tenant": "  "}, partial=True)  # fmt: skip
    assert analysis.values["grant"] == "auth_code"
    assert analysis.values["token_uri"] == V1_TOKEN
    assert analysis.values["api_version"] == "9.1"
    assert analysis.values["tenant"] is None
    assert analysis.problems == {}


def test_analysis_derives_when_complete():
    derived = Analysis({"service_url": API, "client_id": PUBLIC}).derived
    assert derived is not None
    assert derived.resource == ORG
    assert derived.grant == "device_code"
    assert derived.version == "v2"
    assert derived.scopes == (f"{ORG}/user_impersonation", "offline_access")


def test_analysis_partial_derives_suggestions_without_client_id():
    derived = Analysis({"service_url": ORG, "tenant": TENANT}, partial=True).derived
    assert derived is not None
    assert derived.token_uri == f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"


def test_analysis_problems_hide_secrets():
    secret = "S3cr3t~Zebra.991_xyz"
    analysis = Analysis({"service_url": f"https://{secret}", "client_secret": secret})
    assert analysis.problems
    assert all(secret not in str(err) for err in analysis.scrubbed_problems().values())
