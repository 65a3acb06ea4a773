"""Web API reads over HTTPS: service root, WhoAmI, auth, query options, single rows, $expand."""

from __future__ import annotations

import httpx
import pytest

from d365nb.sandbox import Sandbox, _directory as directory

from .conftest import UserApi, tls

pytestmark = pytest.mark.sandbox

ANN = 'odata.include-annotations="*"'


def test_service_document_lists_entity_sets(api: httpx.Client) -> None:
    r = api.get("")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json; odata.metadata=minimal"
    assert r.headers["odata-version"] == "4.0"
    assert r.headers["req_id"] == r.headers["x-ms-service-request-id"]
    body = r.json()
    assert body["@odata.context"].endswith("/api/data/v9.2/$metadata")
    names = {item["name"] for item in body["value"]}
    assert {
        "accounts",
        "contacts",
        "opportunities",
        "leads",
        "systemusers",
        "businessunits",
        "transactioncurrencies",
    } <= names
    assert {"name": "accounts", "kind": "EntitySet", "url": "accounts"} in body["value"]


@pytest.mark.parametrize("version", ["v9.0", "v9.1", "v9.2"])
def test_whoami_for_the_application_user(api: httpx.Client, sandbox: Sandbox, version: str) -> None:
    r = api.get(f"{sandbox.base_url}/api/data/{version}/WhoAmI")
    assert r.status_code == 200
    body = r.json()
    assert body["@odata.context"] == (
        f"{sandbox.base_url}/api/data/{version}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"
    )
    app = directory.app_by_id(directory.CONFIDENTIAL_CLIENT_ID)
    assert app is not None
    assert body["UserId"] == app.application_user_id
    assert body["BusinessUnitId"] == directory.ROOT_BUSINESS_UNIT_ID
    assert body["OrganizationId"] == directory.ORG_ID


def test_whoami_post_is_404(api: httpx.Client) -> None:
    r = api.post("WhoAmI")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == ""
    assert "No HTTP resource was found" in r.json()["error"]["message"]


def test_delegated_token_maps_to_the_users_systemuser(user_api: UserApi) -> None:
    alex = directory.user_by_name("alex")
    r = user_api("alex").get("WhoAmI")
    assert r.status_code == 200
    assert r.json()["UserId"] == alex.systemuserid


def test_user_without_a_role_gets_403_on_data_but_whoami_works(user_api: UserApi) -> None:
    client = user_api("norole")
    assert client.get("WhoAmI").status_code == 200
    r = client.get("accounts?$top=1")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "0x80040220"
    assert "is missing prvReadAccount privilege" in r.json()["error"]["message"]


def test_missing_or_bad_token_gets_the_bearer_challenge(sandbox: Sandbox) -> None:
    expected = (
        f"Bearer authorization_uri={sandbox.base_url}/{directory.TENANT_ID}"
        f"/oauth2/authorize, resource_id={sandbox.base_url}/"
    )
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        r = httpx.get(sandbox.service_url + "accounts", headers=headers, verify=tls(sandbox))
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == expected


def test_entity_set_names_are_case_sensitive(api: httpx.Client) -> None:
    r = api.get("Accounts")
    assert r.status_code == 404
    assert r.json() == {
        "error": {"code": "0x8006088a", "message": "Resource not found for the segment 'Accounts'."}
    }


def test_select_returns_columns_primary_key_and_etag(api: httpx.Client, sandbox: Sandbox) -> None:
    r = api.get("accounts?$select=name,revenue&$top=2")
    body = r.json()
    assert body["@odata.context"] == f"{sandbox.service_url}$metadata#accounts(name,revenue)"
    assert len(body["value"]) == 2
    row = body["value"][0]
    assert list(row)[0] == "@odata.etag" and row["@odata.etag"].startswith('W/"')
    assert {"name", "revenue", "accountid", "_transactioncurrencyid_value"} == set(row) - {
        "@odata.etag"
    }
    assert "@odata.nextLink" not in body


def test_without_select_all_columns_with_nulls(api: httpx.Client) -> None:
    row = api.get("accounts?$top=1").json()["value"][0]
    assert len(row) > 30
    for column in (
        "accountnumber",
        "telephone1",
        "emailaddress1",
        "description",
        "numberofemployees",
        "revenue",
        "address1_latitude",
        "industrycode",
        "cr_productinterests",
        "creditonhold",
        "cr_foundedon",
        "createdon",
        "_ownerid_value",
        "_parentaccountid_value",
        "statecode",
        "statuscode",
    ):
        assert column in row
    assert isinstance(row["creditonhold"], bool)
    assert row["createdon"].endswith("Z") and len(row["createdon"]) == 20


def test_unknown_property_in_select_is_400(api: httpx.Client) -> None:
    r = api.get("accounts?$select=Name")
    assert r.status_code == 400
    assert r.json()["error"] == {
        "code": "0x0",
        "message": "Could not find a property named 'Name' on type "
        "'Microsoft.Dynamics.CRM.account'.",
    }


def test_filter_comparison_logical_and_functions(api: httpx.Client) -> None:
    everything = api.get("accounts?$select=name,revenue,statecode").json()["value"]
    rich = [
        a
        for a in everything
        if a["revenue"] is not None and a["revenue"] > 100000 and a["statecode"] == 0
    ]
    r = api.get("accounts?$select=name&$filter=revenue gt 100000 and statecode eq 0")
    assert {a["accountid"] for a in r.json()["value"]} == {a["accountid"] for a in rich}
    r = api.get(
        "accounts?$select=name&$filter=contains(name,'TRADERS') or startswith(name,'contoso')"
    )
    names = [a["name"] for a in r.json()["value"]]
    assert names and all("traders" in n.lower() or n.lower().startswith("contoso") for n in names)
    r = api.get("accounts?$select=name&$filter=not endswith(name,'Ltd')")
    assert all(not a["name"].endswith("Ltd") for a in r.json()["value"])


def test_filter_null_tests_and_string_equality_ignores_case(api: httpx.Client) -> None:
    missing = api.get("accounts?$select=emailaddress1&$filter=emailaddress1 eq null").json()
    assert missing["value"] and all(a["emailaddress1"] is None for a in missing["value"])
    first = api.get("accounts?$select=name&$top=1").json()["value"][0]
    r = api.get(
        "accounts", params={"$select": "name", "$filter": f"name eq '{first['name'].upper()}'"}
    )
    assert first["accountid"] in {a["accountid"] for a in r.json()["value"]}


def test_filter_on_lookup_value_with_bare_and_quoted_guids(api: httpx.Client) -> None:
    contact = api.get(
        "contacts?$select=_parentcustomerid_value&$filter=_parentcustomerid_value ne null&$top=1"
    ).json()["value"][0]
    account_id = contact["_parentcustomerid_value"]
    for literal in (account_id, f"'{account_id}'", f"'{{{account_id.upper()}}}'"):
        r = api.get(f"contacts?$select=fullname&$filter=_parentcustomerid_value eq {literal}")
        assert r.status_code == 200, r.text
        assert contact["contactid"] in {c["contactid"] for c in r.json()["value"]}


def test_filter_through_a_lookup_navigation_property(api: httpx.Client) -> None:
    account = api.get(
        "accounts?$select=name,_primarycontactid_value&$filter="
        "_primarycontactid_value ne null&$top=1"
    ).json()["value"][0]
    contact = api.get(f"contacts({account['_primarycontactid_value']})?$select=fullname").json()
    r = api.get(
        "accounts",
        params={
            "$select": "name",
            "$filter": f"primarycontactid/contactid eq {contact['contactid']}",
        },
    )
    assert [a["accountid"] for a in r.json()["value"]] == [account["accountid"]]


def test_filter_date_and_datetime_literals(api: httpx.Client) -> None:
    r = api.get(
        "accounts?$select=createdon&$filter=createdon ge 2021-01-01T00:00:00Z and "
        "createdon lt 2022-01-01"
    )
    assert r.status_code == 200, r.text
    values = [a["createdon"] for a in r.json()["value"]]
    assert values and all("2021-01-01T00:00:00Z" <= v < "2022" for v in values)
    r = api.get("contacts?$select=birthdate&$filter=birthdate lt 1970-01-01")
    assert all(c["birthdate"] < "1970-01-01" for c in r.json()["value"])


def test_filter_quote_doubling_and_unterminated_literal(api: httpx.Client) -> None:
    r = api.get("contacts", params={"$select": "lastname", "$filter": "lastname eq 'O''Brian'"})
    assert r.status_code == 200
    assert r.json()["value"] and all(c["lastname"] == "O'Brian" for c in r.json()["value"])
    r = api.get("contacts", params={"$filter": "lastname eq 'O'Brian'"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "0x80060888"


def test_filter_unsupported_function_is_400(api: httpx.Client) -> None:
    r = api.get("accounts", params={"$filter": "tolower(name) eq 'x'"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "0x80060888"


def test_orderby_desc_and_asc(api: httpx.Client) -> None:
    values = api.get(
        "accounts?$select=numberofemployees,name&$orderby=numberofemployees desc,name"
    ).json()["value"]
    employees = [a["numberofemployees"] for a in values]
    known = [e for e in employees if e is not None]
    # NULL sorts lowest, as in SQL Server: last when descending.
    assert employees == sorted(known, reverse=True) + [None] * (len(employees) - len(known))


def test_count_is_placed_after_context(api: httpx.Client) -> None:
    body = api.get(
        "accounts?$select=name&$count=true&$filter=statecode eq 0",
        headers={"Prefer": "odata.maxpagesize=5"},
    ).json()
    assert list(body)[:2] == ["@odata.context", "@odata.count"]
    everything = api.get("accounts?$select=name&$filter=statecode eq 0").json()["value"]
    assert body["@odata.count"] == len(everything)


def test_count_segment_is_plain_text_with_bom(api: httpx.Client) -> None:
    r = api.get("leads/$count")
    assert r.headers["content-type"].startswith("text/plain")
    assert r.content.startswith(b"\xef\xbb\xbf")
    assert int(r.content[3:]) == len(api.get("leads?$select=leadid").json()["value"])


def test_single_row_by_id_and_by_alternate_key(api: httpx.Client, sandbox: Sandbox) -> None:
    row = api.get("accounts?$select=name,accountnumber&$top=1").json()["value"][0]
    r = api.get(f"accounts({row['accountid']})?$select=name")
    assert r.status_code == 200
    body = r.json()
    assert body["@odata.context"] == f"{sandbox.service_url}$metadata#accounts(name)/$entity"
    assert body["name"] == row["name"] and body["@odata.etag"] == r.headers["etag"]
    r = api.get(f"accounts(accountnumber='{row['accountnumber']}')?$select=name")
    assert r.json()["accountid"] == row["accountid"]


def test_missing_row_is_404_with_dataverse_code(api: httpx.Client) -> None:
    missing = "00000000-0000-0000-0000-00000000dead"
    r = api.get(f"accounts({missing})")
    assert r.status_code == 404
    assert r.json() == {
        "error": {
            "code": "0x80040217",
            "message": f"Entity 'account' With Id = {missing} Does Not Exist",
        }
    }


def test_conditional_get_returns_304_when_unchanged(api: httpx.Client) -> None:
    row = api.get("accounts?$select=name&$top=1").json()["value"][0]
    r = api.get(
        f"accounts({row['accountid']})?$select=name", headers={"If-None-Match": row["@odata.etag"]}
    )
    assert r.status_code == 304
    r = api.get(f"accounts({row['accountid']})?$select=name", headers={"If-None-Match": "null"})
    assert r.status_code == 200


def test_single_property(api: httpx.Client, sandbox: Sandbox) -> None:
    row = api.get("accounts?$select=name&$top=1").json()["value"][0]
    body = api.get(f"accounts({row['accountid']})/name").json()
    assert body == {
        "@odata.context": f"{sandbox.service_url}$metadata#accounts({row['accountid']})/name",
        "value": row["name"],
    }


def test_annotations_are_placed_before_their_property(api: httpx.Client) -> None:
    r = api.get(
        "contacts?$select=fullname,gendercode,annualincome,_parentcustomerid_value,"
        "birthdate,donotphone&$filter=_parentcustomerid_value ne null and gendercode "
        "ne null and annualincome ne null and birthdate ne null&$top=1",
        headers={"Prefer": ANN},
    )
    assert r.headers["preference-applied"] == ANN
    row = r.json()["value"][0]
    keys = list(row)
    lookup = "_parentcustomerid_value"
    fv = "@OData.Community.Display.V1.FormattedValue"
    assert keys.index(lookup + fv) + 1 == keys.index(
        lookup + "@Microsoft.Dynamics.CRM.associatednavigationproperty"
    )
    assert keys.index(lookup + "@Microsoft.Dynamics.CRM.lookuplogicalname") + 1 == keys.index(
        lookup
    )
    assert row[lookup + "@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert row[lookup + "@Microsoft.Dynamics.CRM.associatednavigationproperty"] == (
        "parentcustomerid_account"
    )
    assert keys.index("gendercode" + fv) + 1 == keys.index("gendercode")
    assert row["gendercode" + fv] in ("Male", "Female")
    assert row["annualincome" + fv].startswith("$")
    assert row["donotphone" + fv] in ("Allow", "Do Not Allow")
    y, m, d = row["birthdate"].split("-")
    assert row["birthdate" + fv] == f"{int(m)}/{int(d)}/{y}"
    account = r.json()["value"][0][lookup]
    name = api.get(f"accounts({account})/name").json()["value"]
    assert row[lookup + fv] == name


def test_only_the_requested_annotations(api: httpx.Client) -> None:
    r = api.get(
        "accounts?$select=industrycode,_ownerid_value&$filter=industrycode ne null&$top=1",
        headers={"Prefer": 'odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"'},
    )
    row = r.json()["value"][0]
    assert "industrycode@OData.Community.Display.V1.FormattedValue" not in row
    assert row["_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "systemuser"


def test_multi_select_choices_are_comma_separated_strings(api: httpx.Client) -> None:
    r = api.get(
        "accounts?$select=cr_productinterests&$filter=cr_productinterests ne null&$top=1",
        headers={"Prefer": ANN},
    )
    row = r.json()["value"][0]
    values = row["cr_productinterests"].split(",")
    assert all(v.startswith("1000000") for v in values)
    labels = row["cr_productinterests@OData.Community.Display.V1.FormattedValue"].split("; ")
    assert len(labels) == len(values)


def test_expand_single_valued_and_collection(api: httpx.Client, sandbox: Sandbox) -> None:
    r = api.get(
        "accounts?$select=name&$expand=primarycontactid($select=fullname),"
        "contact_customer_accounts($select=fullname;$orderby=fullname)&$top=3"
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["@odata.context"].endswith(
        "#accounts(name,primarycontactid(fullname),contact_customer_accounts(fullname))"
    )
    for account in body["value"]:
        contact = account["primarycontactid"]
        assert contact is None or set(contact) == {"@odata.etag", "fullname", "contactid"}
        children = account["contact_customer_accounts"]
        names = [c["fullname"] for c in children]
        assert names == sorted(names, key=str.lower)
        assert account["contact_customer_accounts@odata.nextLink"] == (
            f"{sandbox.service_url}accounts({account['accountid']})/contact_customer_accounts"
            "?$select=fullname&$orderby=fullname"  # the nested options shape the next page too
        )
        direct = api.get(
            f"accounts({account['accountid']})/contact_customer_accounts?$select=fullname"
        ).json()["value"]
        assert {c["contactid"] for c in direct} == {c["contactid"] for c in children}


def test_expand_with_top_on_a_lookup_is_rejected(api: httpx.Client) -> None:
    r = api.get("accounts?$expand=primarycontactid($top=1)")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "0x80060888"


def test_unsupported_query_options(api: httpx.Client) -> None:
    r = api.get("accounts?$skip=10")
    assert r.status_code == 400


def test_expand_collection_with_inner_filter(api: httpx.Client) -> None:
    account = api.get(
        "accounts?$select=name&$filter=_primarycontactid_value ne null&$top=1"
    ).json()["value"][0]
    body = api.get(
        f"accounts({account['accountid']})?$select=name&$expand=contact_customer_accounts("
        "$select=fullname,statecode;$filter=statecode eq 1)"
    ).json()
    assert all(c["statecode"] == 1 for c in body["contact_customer_accounts"])
    everything = api.get(
        f"accounts({account['accountid']})/contact_customer_accounts?$select=statecode"
    ).json()["value"]
    assert len(body["contact_customer_accounts"]) == sum(c["statecode"] == 1 for c in everything)


def test_single_valued_navigation_segment(api: httpx.Client, sandbox: Sandbox) -> None:
    account = api.get(
        "accounts?$select=_primarycontactid_value&$filter=_primarycontactid_value ne null&$top=1"
    ).json()["value"][0]
    r = api.get(f"accounts({account['accountid']})/primarycontactid?$select=fullname")
    assert r.status_code == 200
    body = r.json()
    assert body["contactid"] == account["_primarycontactid_value"]
    assert body["@odata.context"] == f"{sandbox.service_url}$metadata#contacts(fullname)/$entity"


def test_dataverse_query_functions_in_and_between(api: httpx.Client) -> None:
    r = api.get(
        "accounts",
        params={
            "$select": "numberofemployees",
            "$filter": "Microsoft.Dynamics.CRM.Between(PropertyName='numberofemployees',"
            'PropertyValues=["5","2000"])',
        },
    )
    assert r.status_code == 200, r.text
    values = [a["numberofemployees"] for a in r.json()["value"]]
    assert values and all(5 <= v <= 2000 for v in values)
    r = api.get(
        "contacts",
        params={
            "$select": "lastname",
            "$filter": "Microsoft.Dynamics.CRM.In(PropertyName='lastname',"
            'PropertyValues=["O\'Brian","Smith"]) and statecode eq 0',
        },
    )
    names = {c["lastname"] for c in r.json()["value"]}
    assert names and names <= {"O'Brian", "Smith"}
    r = api.get(
        "accounts",
        params={"$filter": "Microsoft.Dynamics.CRM.ThisFiscalYear(PropertyName='createdon')"},
    )
    assert r.status_code == 400  # fiscal periods are not emulated (LastXDays now is)
    assert "ThisFiscalYear" in r.json()["error"]["message"]


def test_expand_of_the_currency_lookup_reads_the_currency_row(api: httpx.Client) -> None:
    """`transactioncurrencyid` is a lookup on leads and the primary key of its target:
    expanding it must not look for a currency lookup on `transactioncurrency` itself."""
    r = api.get("leads?$select=subject&$expand=transactioncurrencyid($select=currencyname)")
    assert r.status_code == 200, r.text[:300]
    rows = [row for row in r.json()["value"] if row["transactioncurrencyid"] is not None]
    assert rows and all(row["transactioncurrencyid"]["currencyname"] for row in rows)
