"""The F&O dialect's pure rules: literals, key segments, filters, errors, the CSDL model."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

import d365nb
from d365nb._dialects import DATAVERSE, FNO, dialect_for
from d365nb._dialects.fno import business_rule_sentence, fno_error_from_response
from d365nb._fno_metadata import parse_csdl
from d365nb._metadata import Table
from d365nb.sandbox._fno_metadata import csdl

CLIENT = "00001111-aaaa-2222-bbbb-3333cccc4444"


@pytest.fixture(scope="module")
def customers() -> Table:
    return parse_csdl(csdl()).table("CustomersV3")


def test_csdl_to_the_common_model(customers: Table) -> None:
    assert customers.logical_name == "CustomerV3"
    assert FNO.key_fields(customers) == ("dataAreaId", "CustomerAccount")
    party = customers.attributes["PartyType"]
    assert party.attribute_type == "Enum" and party.format == "DirPartyBaseType"
    assert dict(party.options) == {1: "Organization", 2: "Person"}
    assert customers.attributes["CreditLimit"].attribute_type == "Decimal"
    assert customers.attributes["ModifiedDateTime"].attribute_type == "DateTime"
    assert customers.attributes["CustomerAccount"].display_name == "Customer account"


def test_literals_and_key_segments(customers: Table) -> None:
    party = customers.attributes["PartyType"]
    assert (
        FNO.literal("Person", party) == "Microsoft.Dynamics.DataEntities.DirPartyBaseType'Person'"
    )
    assert FNO.literal(dt.date(2024, 5, 1)) == "2024-05-01T12:00:00Z"
    with pytest.raises(d365nb.ConfigError, match="Organization, Person"):
        FNO.literal("Robot", party)
    segment = FNO.key_segment(customers, {"dataAreaId": "usmf", "CustomerAccount": "O'Neil #1"})
    assert segment == "(dataAreaId='usmf',CustomerAccount='O''Neil%20%231')"
    with pytest.raises(d365nb.ConfigError, match="dataAreaId"):
        FNO.key_segment(customers, {"CustomerAccount": "US-1"})


def test_filters_and_companies(customers: Table) -> None:
    text = FNO.rewrite_filter(
        "PartyType eq 'Person' and contains(OrganizationName,'ware') or startswith(NameAlias,'A')",
        customers,
    )
    assert text == (
        "PartyType eq Microsoft.Dynamics.DataEntities.DirPartyBaseType'Person' and "
        "OrganizationName eq '*ware*' or NameAlias eq 'A*'"
    )
    params, scoped = FNO.company_query(customers, company="USRT", cross_company=False, filter=None)
    assert params == {"cross-company": "true"} and scoped == "dataAreaId eq 'usrt'"
    params, _ = FNO.company_query(
        customers, company=None, cross_company=False, filter="dataAreaId eq 'demf'"
    )
    assert params == {"cross-company": "true"}  # never a bare dataAreaId filter


def test_error_shape() -> None:
    infolog = (
        "Write failed for table row of type 'CustCustomerV3Entity'. Infolog: Error: The value "
        "'Local' in field 'Customer group' is not found in the related table 'Customer groups'."
        "; Warning: validateField failed on field 'CustCustomerV3Entity.CustomerGroupId'."
    )
    assert business_rule_sentence(infolog) == (
        "The value 'Local' in field 'Customer group' is not found in the related table "
        "'Customer groups'."
    )
    body = {
        "error": {
            "code": "",
            "message": "An error has occurred.",
            "innererror": {
                "message": infolog,
                "type": "Microsoft.Dynamics.Platform.Integration.Services.OData."
                "AxODataWriteException",
            },
        }
    }
    error = fno_error_from_response(httpx.Response(500, json=body))
    assert error.status == 500 and error.service_message.startswith("The value 'Local'")
    assert "not retried" in (error.hint or "")


def test_dialect_for_settings() -> None:
    fno = d365nb.Settings(service_url="https://c.operations.dynamics.com", client_id=CLIENT)
    crm = d365nb.Settings(service_url="https://c.crm.dynamics.com", client_id=CLIENT)
    assert dialect_for(fno) is FNO and dialect_for(crm) is DATAVERSE
    assert FNO.max_page_size == 10_000 and not FNO.has_change_tracking
