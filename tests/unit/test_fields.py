"""The settings vocabulary: redaction and field-name checks."""

from __future__ import annotations

import pytest

from d365nb._exceptions import ConfigError
from d365nb._fields import FIELDS, SECRET_FIELDS, check_names, redact, unknown_field

SECRET = "S3cr3t~Zebra.991_xyz"
ACCESS = "eyJ0eXAi.AccessTok-Quokka-4242"
ALL_SECRETS = (SECRET, ACCESS)


def _assert_no_secret(*texts: object) -> None:
    for text in texts:
        for secret in ALL_SECRETS:
            assert secret not in str(text)


def test_redact():
    text = f"body client_secret={SECRET}&x=1 header Bearer {ACCESS}"
    out = redact(text, [SECRET, ACCESS, None, ""])
    _assert_no_secret(out)
    assert out.startswith("body client_secret=") and out.endswith("x=1 header Bearer <redacted>")


def test_redact_url_encoded_and_nested():
    secret = "a+b/c d=="
    text = "form: a%2Bb%2Fc+d%3D%3D url: a%2Bb%2Fc%20d%3D%3D plain: a+b/c d=="
    out = redact(text, [secret])
    assert "a%2Bb" not in out and "a+b/c" not in out
    assert out.count("<redacted>") == 3
    # A secret that contains another is hidden whole, not left half-visible.
    assert redact("xx-LONGSECRET-xx", ["SECRET", "LONGSECRET"]) == "xx-<redacted>-xx"
    assert redact("nothing here", []) == "nothing here"


def test_redact_hides_a_secret_written_as_key_value_anywhere():
    assert redact("pasted: ClientSecret=abc;x", []) == "pasted: ClientSecret=<redacted>;x"


# -- field names -------------------------------------------------------------------------


def test_secret_fields_are_fields():
    assert set(SECRET_FIELDS) <= set(FIELDS)


def test_unknown_field_suggests_the_nearest_name():
    err = unknown_field("clientid")
    assert isinstance(err, ConfigError)
    assert err.field == "clientid"
    assert "client_id" in (err.hint or "")


def test_check_names_accepts_fields_and_rejects_the_rest():
    check_names({name: None for name in FIELDS})
    with pytest.raises(ConfigError) as info:
        check_names({"service_url": "x", "servise_url": "y"})
    assert info.value.field == "servise_url"
