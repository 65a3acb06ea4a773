"""The shapes of the settings' URLs, checked one at a time."""

from __future__ import annotations

from d365nb._exceptions import ConfigError
from d365nb._urls import endpoints_agree, parse_endpoint, parse_service_url

TENANT = "aaaabbbb-0000-cccc-1111-dddd2222eeee"


class Sink:
    def __init__(self) -> None:
        self.problems: dict[str, ConfigError] = {}

    def fail(self, name: str, message: str, hint: str) -> None:
        self.problems.setdefault(name, ConfigError(message, field=name, hint=hint))

    def missing(self, name: str, message: str, hint: str) -> None:
        self.fail(name, message, hint)

    def ok(self, *names: str) -> bool:
        return not any(n in self.problems for n in names)


def test_service_url_of_an_api_host_gives_the_org_resource():
    sink = Sink()
    svc = parse_service_url(sink, "https://org.api.crm4.dynamics.com/api/data/v9.1/")
    assert svc is not None and sink.problems == {}
    assert svc.resource == "https://org.crm4.dynamics.com"
    assert svc.version == "9.1"
    assert svc.login_base == "https://login.microsoftonline.com"


def test_service_url_missing_and_sign_in_host():
    sink = Sink()
    assert parse_service_url(sink, None) is None
    assert "service_url" in sink.problems
    sink = Sink()
    assert parse_service_url(sink, f"https://login.microsoftonline.com/{TENANT}") is None
    assert "sign-in service" in sink.problems["service_url"].message


def test_endpoint_versions_and_agreement():
    sink = Sink()
    v1 = parse_endpoint(
        sink, "token_uri", f"https://login.microsoftonline.com/{TENANT}/oauth2/token"
    )
    v2 = parse_endpoint(
        sink, "auth_uri", f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize"
    )
    assert v1 is not None and v1.version == "v1" and v1.tenant == TENANT
    assert v2 is not None and v2.version == "v2"
    endpoints_agree(sink, v1, v2)
    assert "auth_uri" in sink.problems


def test_endpoint_of_the_wrong_kind_is_refused():
    sink = Sink()
    url = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize"
    assert parse_endpoint(sink, "token_uri", url) is None
    assert "authorize endpoint" in sink.problems["token_uri"].message
