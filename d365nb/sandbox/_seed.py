"""The seeded sales dataset: deterministic for a seed, vectorised so a million accounts seed fast.

`generate(rows=..., seed=...)` yields `(table, columns, row_tuples)` in dependency order.
Other tables scale with `rows` (accounts): contacts = rows, opportunities = rows // 2,
leads = rows // 4.  Random draws come from one `numpy.random.Generator(PCG64(seed))`
(numpy arrives with pandas), so whole columns are drawn at once; GUIDs are derived from the
table, the row number and the seed.

Deliberate data-quality problems for the workshop's "data-quality hunt" (deterministic):
every 29th account has no email, every 50th account repeats the previous account's name
(sometimes in another case or with a trailing space), every 37th account's phone number is
badly formatted, and every 41st contact has no email.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from . import _directory as directory
from ._samples import (
    CITIES as _CITIES,
    CORE as _CORE,
    FIRST as _FIRST,
    LAST as _LAST,
    OPP_TOPICS as _OPP_TOPICS,
    PREFIX as _PREFIX,
    STREETS as _STREETS,
    SUFFIX as _SUFFIX,
    TITLES as _TITLES,
)
from ._schema import INDUSTRIES

__all__ = ["CURRENCIES", "SALES_REPS", "generate", "guid", "incidents"]

Rows = Iterator[tuple[Any, ...]]

CURRENCIES: tuple[tuple[str, str, str, str, float], ...] = (
    # id, iso, name, symbol, exchange rate (to the base currency, USD)
    ("cc000000-0000-4000-8000-000000000001", "USD", "US Dollar", "$", 1.0),
    ("cc000000-0000-4000-8000-000000000002", "EUR", "Euro", "€", 0.92),
    ("cc000000-0000-4000-8000-000000000003", "GBP", "Pound Sterling", "£", 0.79),
    ("cc000000-0000-4000-8000-000000000004", "JPY", "Yen", "¥", 151.2),
)

# The opportunity's sales stages (salesstage 0..3); stepname is "<n>-<stage>".
_STAGES = ("Qualify", "Develop", "Propose", "Close")
_BUS = (
    (directory.ROOT_BUSINESS_UNIT_ID, directory.ORG_NAME, None),
    (
        "b0000000-0000-4000-8000-000000000002",
        "Sales North America",
        directory.ROOT_BUSINESS_UNIT_ID,
    ),
    ("b0000000-0000-4000-8000-000000000003", "Sales Europe", directory.ROOT_BUSINESS_UNIT_ID),
)

SALES_REPS: tuple[tuple[str, str, str], ...] = tuple(
    (f"5a000000-0000-4000-8000-0000000001{i:02x}", first, last)
    for i, (first, last) in enumerate(
        [
            ("Diego", "Siciliani"),
            ("Isaiah", "Langer"),
            ("Johanna", "Lorenz"),
            ("Lidia", "Holloway"),
            ("Lynne", "Robbins"),
            ("Miriam", "Graham"),
            ("Patti", "Fernandez"),
            ("Pradeep", "Gupta"),
        ]
    )
)


def guid(tag: int, i: int, seed: int) -> str:
    """A deterministic GUID for row `i` of the table tagged `tag`."""
    mix = ((i + 1) * 0x9E3779B97F4A7C15 ^ (seed * 0x632BE59BD9B4E019)) & 0xFFFFFFFFFFFF
    return f"{i:08x}-{seed & 0xFFFF:04x}-4{tag:03x}-8{(i >> 32) & 0xFFF:03x}-{mix:012x}"


def _guids(tag: int, n: int, seed: int) -> list[str]:
    """`guid(tag, i, seed)` for i in range(n), with the arithmetic done by numpy."""
    i = np.arange(n, dtype=np.uint64)
    # uint64 products wrap modulo 2**64; the low 48 bits equal those of the exact product.
    mix = ((i + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(
        (seed * 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    )
    mixes = (mix & np.uint64(0xFFFFFFFFFFFF)).tolist()
    middle = f"-{seed & 0xFFFF:04x}-4{tag:03x}-8"
    return [f"{k:08x}{middle}{(k >> 32) & 0xFFF:03x}-{m:012x}" for k, m in enumerate(mixes)]


def _datetimes(rng: np.random.Generator, n: int, start: str, days: int) -> list[str]:
    base = np.datetime64(start, "s")
    offsets = rng.integers(0, days * 86400, n).astype("timedelta64[s]")
    return [s + "Z" for s in np.datetime_as_string(base + offsets, unit="s").tolist()]


def _dates(rng: np.random.Generator, n: int, start: str, days: int) -> list[str]:
    base = np.datetime64(start, "D")
    offsets = rng.integers(0, days, n).astype("timedelta64[D]")
    return list(np.datetime_as_string(base + offsets, unit="D").tolist())


def _pick(rng: np.random.Generator, values: Sequence[Any], n: int) -> list[Any]:
    idx = rng.integers(0, len(values), n).tolist()
    return [values[k] for k in idx]


def _nulls(rng: np.random.Generator, values: list[Any], share: float) -> list[Any]:
    mask = (rng.random(len(values)) < share).tolist()
    return [None if m else v for v, m in zip(values, mask, strict=True)]


def _slug(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())[:24] or "company"


def generate(*, rows: int, seed: int) -> Iterator[tuple[str, tuple[str, ...], Rows]]:
    """Yield `(entity set, column names, row tuples)` for every table, parents first."""
    rng = np.random.default_rng(seed)
    version = iter(range(1000, 10**12))
    root_user = directory.USERS[0].systemuserid
    now = "2026-01-01T08:00:00Z"
    common = ("createdon", "modifiedon", "_createdby_value", "_modifiedby_value", "versionnumber")

    cur_cols = (
        "transactioncurrencyid",
        "isocurrencycode",
        "currencyname",
        "currencysymbol",
        "exchangerate",
        *common,
    )
    yield (
        "transactioncurrencies",
        cur_cols,
        iter(
            [
                (cid, iso, name, sym, rate, now, now, root_user, root_user, next(version))
                for cid, iso, name, sym, rate in CURRENCIES
            ]
        ),
    )

    bu_cols = ("businessunitid", "name", "_parentbusinessunitid_value", *common)
    yield (
        "businessunits",
        bu_cols,
        iter(
            [
                (bid, name, parent, now, now, root_user, root_user, next(version))
                for bid, name, parent in _BUS
            ]
        ),
    )

    su_cols = (
        "systemuserid",
        "fullname",
        "firstname",
        "lastname",
        "domainname",
        "internalemailaddress",
        "azureactivedirectoryobjectid",
        "applicationid",
        "accessmode",
        "isdisabled",
        "_businessunitid_value",
        *common,
    )
    users: list[tuple[Any, ...]] = []
    for u in directory.USERS:
        first, _, last = u.name.partition(" ")
        users.append(
            (
                u.systemuserid,
                u.name,
                first,
                last,
                u.upn,
                u.upn,
                u.oid,
                None,
                0,
                0,
                u.business_unit_id,
                now,
                now,
                root_user,
                root_user,
                next(version),
            )
        )
    for app in directory.APPS:
        if app.application_user_id:
            users.append(
                (
                    app.application_user_id,
                    f"# {app.name}",
                    None,
                    "# " + app.name,
                    f"{app.client_id}@{directory.TENANT_DOMAIN}",
                    None,
                    None,
                    app.client_id,
                    4,
                    0,
                    directory.ROOT_BUSINESS_UNIT_ID,
                    now,
                    now,
                    root_user,
                    root_user,
                    next(version),
                )
            )
    for k, (uid, first, last) in enumerate(SALES_REPS):
        upn = f"{first.lower()}@{directory.TENANT_DOMAIN}"
        users.append(
            (
                uid,
                f"{first} {last}",
                first,
                last,
                upn,
                upn,
                None,
                None,
                0,
                0,
                _BUS[1 + k % 2][0],
                now,
                now,
                root_user,
                root_user,
                next(version),
            )
        )
    yield "systemusers", su_cols, iter(users)

    owners = [u.systemuserid for u in directory.USERS if u.has_role] + [r[0] for r in SALES_REPS]
    n_acc, n_con, n_opp, n_lead = rows, rows, rows // 2, rows // 4
    acc_ids = _guids(1, n_acc, seed)
    con_ids = _guids(2, n_con, seed)
    currency_ids = [c[0] for c in CURRENCIES]
    currency_rate = {c[0]: c[4] for c in CURRENCIES}

    # -- accounts
    n = n_acc
    combos = len(_PREFIX) * len(_CORE) * len(_SUFFIX)
    stride = 7919  # prime, coprime with `combos`: walks every combination once
    combo_names = [
        f"{_PREFIX[k % len(_PREFIX)]} {_CORE[(k // len(_PREFIX)) % len(_CORE)]}"
        + _SUFFIX[k // (len(_PREFIX) * len(_CORE))]
        for k in range(combos)
    ]
    combo_slugs = [_slug(name) for name in combo_names]
    names: list[str] = []
    slugs: list[str] = []
    for i in range(n):
        k = (i * stride) % combos
        name, slug = combo_names[k], combo_slugs[k]
        if i >= combos:
            name += f" {i // combos + 1}"
            slug += str(i // combos + 1)
        if i % 50 == 7 and i > 0:  # deliberate duplicate of the previous account's name
            prev = names[i - 1]
            name = (prev, prev.upper(), prev + " ")[(i // 50) % 3]
        names.append(name)
        slugs.append(slug)
    city_idx = rng.integers(0, len(_CITIES), n).tolist()
    area = [_CITIES[c][5] for c in city_idx]
    phone_num = rng.integers(100, 9999, n).tolist()
    phones = []
    for i in range(n):
        if i % 37 == 5:  # deliberately bad formats
            phones.append(
                (
                    f"{area[i]}555{phone_num[i]}",
                    f"555 {phone_num[i]:04d}",
                    "ask reception",
                    f"+1 ({area[i]}) 555-{phone_num[i]:04d} ext",
                )[i % 4]
            )
        else:
            phones.append(f"+1-{area[i]}-555-{phone_num[i]:04d}")
    emails: list[str | None] = [
        None if i % 29 == 3 else f"info@{slugs[i]}.example.com" for i in range(n)
    ]
    jitter = rng.normal(0, 0.05, (n, 2))
    city_at = np.array([[c[2], c[3]] for c in _CITIES])[np.array(city_idx, dtype=np.int64)]
    lat_lon = np.round(city_at + jitter, 5).tolist() if n else []
    employees = np.minimum(np.round(rng.lognormal(4.0, 1.6, n)), 250000).astype(int).tolist()
    revenue = _nulls(rng, np.round(rng.lognormal(14.0, 1.8, n), 2).tolist(), 0.08)
    credit = _nulls(rng, (rng.integers(1, 200, n) * 5000.0).tolist(), 0.4)
    acc_currency = [currency_ids[k] for k in rng.choice(4, n, p=[0.8, 0.12, 0.06, 0.02]).tolist()]
    industry = _nulls(rng, rng.integers(1, len(INDUSTRIES) + 1, n).tolist(), 0.1)
    ctype = rng.integers(1, 13, n).tolist()
    category = _nulls(rng, rng.integers(1, 3, n).tolist(), 0.3)
    choices = [
        ",".join(str(100000000 + b) for b in range(5) if bits >> b & 1) or None
        for bits in range(32)
    ]
    interests = [choices[bits] for bits in rng.integers(0, 32, n).tolist()]
    onhold = (rng.random(n) < 0.05).astype(int).tolist()
    donotemail = (rng.random(n) < 0.1).astype(int).tolist()
    founded = _nulls(rng, _dates(rng, n, "1950-01-01", 27000), 0.2)
    onhold_time = [
        _t if h else None
        for _t, h in zip(_datetimes(rng, n, "2023-01-01", 1000), onhold, strict=True)
    ]
    parent_pick = rng.integers(0, max(n, 1), n).tolist()
    has_parent = (rng.random(n) < 0.1).tolist()
    parents = [
        acc_ids[p] if hp and p < i else None
        for i, (p, hp) in enumerate(zip(parent_pick, has_parent, strict=True))
    ]
    state = (rng.random(n) < 0.1).astype(int).tolist()
    created = _datetimes(rng, n, "2019-01-01", 2400)
    modified = _datetimes(rng, n, "2025-06-01", 200)
    owner = _pick(rng, owners, n)
    street_no = rng.integers(1, 9999, n).tolist()
    street = _pick(rng, _STREETS, n)
    descr = _nulls(
        rng,
        [
            f"{nm} is a {_CORE[k % len(_CORE)].lower()} company based in {_CITIES[c][0]}."
            for k, (nm, c) in enumerate(zip(names, city_idx, strict=True))
        ],
        0.5,
    )
    acc_cols = (
        "accountid",
        "name",
        "accountnumber",
        "telephone1",
        "emailaddress1",
        "websiteurl",
        "address1_line1",
        "address1_city",
        "address1_postalcode",
        "address1_country",
        "address1_latitude",
        "address1_longitude",
        "description",
        "numberofemployees",
        "revenue",
        "creditlimit",
        "exchangerate",
        "_transactioncurrencyid_value",
        "industrycode",
        "customertypecode",
        "accountcategorycode",
        "cr_productinterests",
        "creditonhold",
        "donotemail",
        "cr_foundedon",
        "lastonholdtime",
        "_parentaccountid_value",
        "_primarycontactid_value",
        "statecode",
        "statuscode",
        "_ownerid_value",
        *common,
    )

    def accounts() -> Rows:
        for i in range(n):
            c = _CITIES[city_idx[i]]
            yield (
                acc_ids[i],
                names[i],
                f"ACC-{i + 1:07d}",
                phones[i],
                emails[i],
                f"https://www.{slugs[i]}.example.com",
                f"{street_no[i]} {street[i]}",
                c[0],
                f"{c[4]}{i % 100:02d}",
                c[1],
                lat_lon[i][0],
                lat_lon[i][1],
                descr[i],
                employees[i],
                revenue[i],
                credit[i],
                currency_rate[acc_currency[i]],
                acc_currency[i],
                industry[i],
                ctype[i],
                category[i],
                interests[i],
                onhold[i],
                donotemail[i],
                founded[i],
                onhold_time[i],
                parents[i],
                con_ids[i] if i < n_con else None,
                state[i],
                state[i] + 1,
                owner[i],
                created[i],
                modified[i],
                owner[i],
                owner[i],
                next(version),
            )

    yield "accounts", acc_cols, accounts()

    # -- contacts: contact i works for account i % n_acc (every 9th has no company)
    n = n_con
    c_first = _pick(rng, _FIRST, n)
    c_last = _pick(rng, _LAST, n)
    c_phone = rng.integers(1000, 9999, n).tolist()
    titles = _pick(rng, _TITLES, n)
    c_city = _pick(rng, [c[0] for c in _CITIES], n)
    birth = _nulls(rng, _dates(rng, n, "1950-01-01", 18000), 0.3)
    gender = _nulls(rng, rng.integers(1, 3, n).tolist(), 0.2)
    family = _nulls(rng, rng.integers(1, 5, n).tolist(), 0.4)
    income = _nulls(rng, np.round(rng.lognormal(11.0, 0.5, n), 2).tolist(), 0.5)
    donotphone = (rng.random(n) < 0.08).astype(int).tolist()
    c_state = (rng.random(n) < 0.05).astype(int).tolist()
    c_created = _datetimes(rng, n, "2019-06-01", 2300)
    c_modified = _datetimes(rng, n, "2025-06-01", 200)
    c_owner = _pick(rng, owners, n)
    con_cols = (
        "contactid",
        "firstname",
        "lastname",
        "fullname",
        "emailaddress1",
        "telephone1",
        "mobilephone",
        "jobtitle",
        "address1_city",
        "description",
        "birthdate",
        "gendercode",
        "familystatuscode",
        "annualincome",
        "exchangerate",
        "_transactioncurrencyid_value",
        "donotphone",
        "_parentcustomerid_value",
        "_parentcustomerid_type",
        "statecode",
        "statuscode",
        "_ownerid_value",
        *common,
    )

    def contacts() -> Rows:
        for i in range(n):
            acc = i % n_acc if n_acc else None
            company = acc_ids[acc] if acc is not None and i % 9 != 4 else None
            email = (
                None
                if i % 41 == 6
                else (
                    f"{c_first[i].lower()}.{i}@"
                    f"{slugs[acc] if acc is not None else 'mail'}.example.com"
                )
            )
            yield (
                con_ids[i],
                c_first[i],
                c_last[i],
                f"{c_first[i]} {c_last[i]}",
                email,
                f"+1-425-555-{c_phone[i]:04d}",
                None if i % 3 else f"+1-206-555-{c_phone[i]:04d}",
                titles[i],
                c_city[i],
                None,
                birth[i],
                gender[i],
                family[i],
                income[i],
                1.0,
                currency_ids[0],
                donotphone[i],
                company,
                "account" if company else None,
                c_state[i],
                c_state[i] + 1,
                c_owner[i],
                c_created[i],
                c_modified[i],
                c_owner[i],
                c_owner[i],
                next(version),
            )

    yield "contacts", con_cols, contacts()

    # -- opportunities
    n = n_opp
    o_ids = _guids(3, n, seed)
    o_acc = rng.integers(0, max(n_acc, 1), n).tolist()
    o_topic = _pick(rng, _OPP_TOPICS, n)
    o_value = np.round(rng.lognormal(10.5, 1.2, n), 2).tolist()
    o_prob = rng.integers(0, 21, n).tolist()
    o_close = _dates(rng, n, "2024-01-01", 1100)
    o_rating = rng.integers(1, 4, n).tolist()
    o_state = rng.choice(3, n, p=[0.6, 0.25, 0.15]).tolist()
    o_created = _datetimes(rng, n, "2023-01-01", 1000)
    o_owner = _pick(rng, owners, n)
    opp_cols = (
        "opportunityid",
        "name",
        "description",
        "estimatedvalue",
        "actualvalue",
        "exchangerate",
        "_transactioncurrencyid_value",
        "closeprobability",
        "estimatedclosedate",
        "actualclosedate",
        "opportunityratingcode",
        "salesstage",
        "stepname",
        "_customerid_value",
        "_customerid_type",
        "_parentaccountid_value",
        "_parentcontactid_value",
        "statecode",
        "statuscode",
        "_ownerid_value",
        *common,
    )
    status_for = {0: 1, 1: 3, 2: 4}

    def opportunities() -> Rows:
        for i in range(n):
            acc = acc_ids[o_acc[i]] if n_acc else None
            con = con_ids[o_acc[i]] if o_acc[i] < n_con else None
            on_contact = i % 10 == 3 and con is not None
            st = o_state[i]
            # The sales stage follows the probability (closed ones reached Close); no
            # random draw, so the other seeded values stay as they were.
            stage = 3 if st else min(3, o_prob[i] * 5 // 25)
            yield (
                o_ids[i],
                f"{o_topic[i]} - {names[o_acc[i]] if n_acc else ''}",
                None,
                o_value[i],
                o_value[i] if st == 1 else None,
                1.0,
                currency_ids[0],
                o_prob[i] * 5,
                o_close[i],
                o_close[i] if st else None,
                o_rating[i],
                stage,
                f"{stage + 1}-{_STAGES[stage]}",
                con if on_contact else acc,
                "contact" if on_contact else "account",
                acc,
                con,
                st,
                status_for[st],
                o_owner[i],
                o_created[i],
                o_created[i],
                o_owner[i],
                o_owner[i],
                next(version),
            )

    yield "opportunities", opp_cols, opportunities()

    # -- leads
    n = n_lead
    l_ids = _guids(4, n, seed)
    l_first = _pick(rng, _FIRST, n)
    l_last = _pick(rng, _LAST, n)
    l_company = _pick(rng, _PREFIX, n)
    l_rev = _nulls(rng, np.round(rng.lognormal(13.0, 1.5, n), 2).tolist(), 0.3)
    l_emp = rng.integers(1, 5000, n).tolist()
    l_ind = rng.integers(1, len(INDUSTRIES) + 1, n).tolist()
    l_src = rng.integers(1, 11, n).tolist()
    l_q = rng.integers(1, 4, n).tolist()
    l_state = rng.choice(3, n, p=[0.7, 0.2, 0.1]).tolist()
    l_created = _datetimes(rng, n, "2024-01-01", 700)
    l_owner = _pick(rng, owners, n)
    lead_cols = (
        "leadid",
        "subject",
        "firstname",
        "lastname",
        "fullname",
        "companyname",
        "emailaddress1",
        "telephone1",
        "revenue",
        "exchangerate",
        "_transactioncurrencyid_value",
        "numberofemployees",
        "industrycode",
        "leadsourcecode",
        "leadqualitycode",
        "statecode",
        "statuscode",
        "_ownerid_value",
        *common,
    )
    lead_status = {0: 1, 1: 3, 2: 4}

    def leads() -> Rows:
        for i in range(n):
            st = l_state[i]
            yield (
                l_ids[i],
                f"Interested in {_OPP_TOPICS[i % len(_OPP_TOPICS)].lower()}",
                l_first[i],
                l_last[i],
                f"{l_first[i]} {l_last[i]}",
                f"{l_company[i]} Ltd",
                None if i % 13 == 2 else f"{l_first[i].lower()}{i}@lead.example.com",
                f"+1-555-{i % 10000:04d}",
                l_rev[i],
                1.0,
                currency_ids[0],
                l_emp[i],
                l_ind[i],
                l_src[i],
                l_q[i],
                st,
                lead_status[st],
                l_owner[i],
                l_created[i],
                l_created[i],
                l_owner[i],
                l_owner[i],
                next(version),
            )

    yield "leads", lead_cols, leads()


def incidents(*, rows: int, seed: int) -> tuple[str, tuple[str, ...], Rows]:
    """The optional Customer Service cases: `rows // 5`, each for one of the accounts."""
    rng = np.random.default_rng(seed + 112)
    n = rows // 5
    n_acc = rows
    ids = _guids(112, n, seed)
    account = rng.integers(0, max(n_acc, 1), n).tolist()
    priority = rng.choice([1, 2, 2, 3], n).tolist()
    origin = rng.choice([1, 2, 3], n).tolist()
    state = rng.choice([0, 0, 0, 1, 1, 2], n).tolist()
    created = _datetimes(rng, n, "2025-01-01", 365)
    owners = [uid for uid, _, _ in SALES_REPS]
    owner = _pick(rng, owners, n)
    status = {0: (1, 2, 3, 4), 1: (5,), 2: (6,)}
    cols = (
        "incidentid",
        "title",
        "ticketnumber",
        "_customerid_value",
        "_customerid_type",
        "prioritycode",
        "severitycode",
        "caseorigincode",
        "statecode",
        "statuscode",
        "_ownerid_value",
        "createdon",
        "modifiedon",
        "_createdby_value",
        "_modifiedby_value",
        "versionnumber",
    )

    def cases() -> Rows:
        for i in range(n):
            st = state[i]
            yield (
                ids[i],
                f"{_OPP_TOPICS[i % len(_OPP_TOPICS)]} issue",
                f"CAS-{i + 1000:05d}-S{seed % 10}",
                guid(1, account[i], seed),
                "account",
                priority[i],
                1,
                origin[i],
                st,
                status[st][i % len(status[st])],
                owner[i],
                created[i],
                created[i],
                owner[i],
                owner[i],
                1000 + i,
            )

    return "incidents", cols, cases()
