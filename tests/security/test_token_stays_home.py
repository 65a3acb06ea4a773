"""The bearer token goes to the configured host only: nextLinks, redirects and `$batch`
URLs that point elsewhere are refused, and the other host never sees a request."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

import d365nb._accessor  # noqa: F401 - registers df.d365
from d365nb import PartialReadError, TransportError, where
from d365nb._report import PushReport
from d365nb._sync import run_sync
from d365nb.sandbox import Sandbox
from tests._support.ledger import record
from tests._support.proxy import Action, Proxy, answer
from tests.reliability.conftest import through

pytestmark = pytest.mark.sandbox

AREA = "security/token stays home"


def _other_origins(front: Proxy, elsewhere: Proxy) -> dict[str, str]:
    port = elsewhere.port
    return {
        "other port": f"https://127.0.0.1:{port}",
        "plain http": f"http://127.0.0.1:{front.port}",
        "userinfo trick": f"https://127.0.0.1:{front.port}@127.0.0.1:{port}",
        "scheme-relative": f"//127.0.0.1:{port}",
    }


@pytest.mark.parametrize("kind", ["other port", "plain http", "userinfo trick", "scheme-relative"])
@pytest.mark.parametrize("parallel", [False, 3])
def test_next_link_to_another_origin_is_refused(
    sandbox: Sandbox, front: Proxy, elsewhere: Proxy, kind: str, parallel: bool | int
) -> None:
    target = _other_origins(front, elsewhere)[kind]

    def rule(n: int, method: str, path: str) -> Action | None:
        if path.endswith("/accounts"):
            return Action(
                rewrite=lambda body: body.replace(
                    b'"@odata.nextLink":"' + front.base_url.encode(),
                    b'"@odata.nextLink":"' + target.encode(),
                )
            )
        return None

    front.rule = rule
    with through(sandbox, front) as conn:
        with pytest.raises((PartialReadError, TransportError)) as info:
            conn.read("accounts", select=["name"], page_size=7, parallel=parallel, progress=False)
    err = info.value
    cause = err.__cause__ if isinstance(err, PartialReadError) else err
    sent = len(elsewhere.seen)
    record(AREA, f"nextLink {kind} {parallel}", faults=1, operations=1, leaks=sent, checks=1)
    assert isinstance(cause, TransportError) and "Refused" in str(cause), repr(cause)
    assert sent == 0
    token = conn.auth.current.token  # type: ignore[union-attr]
    assert token not in str(err)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_elsewhere_are_refused(
    sandbox: Sandbox, front: Proxy, elsewhere: Proxy, status: int
) -> None:
    front.rule = lambda n, m, p: (
        answer(status, Location=f"{elsewhere.base_url}/api/data/v9.2/accounts")
        if p.endswith("/accounts")
        else None
    )
    with through(sandbox, front) as conn:
        with pytest.raises((PartialReadError, TransportError)) as info:
            conn.read("accounts", select=["name"], progress=False)
    cause = info.value.__cause__ if isinstance(info.value, PartialReadError) else info.value
    record(AREA, f"redirect {status}", faults=1, operations=1, leaks=len(elsewhere.seen), checks=1)
    assert isinstance(cause, TransportError) and "redirect" in str(cause)
    assert elsewhere.seen == []


def test_batch_url_elsewhere_is_refused(sandbox: Sandbox, elsewhere: Proxy) -> None:
    from d365nb.sandbox._connect import connect_to

    with connect_to(sandbox) as conn:
        conn.whoami()
        for url in (
            f"{elsewhere.base_url}/api/data/v9.2/$batch",
            f"{elsewhere.base_url.replace('127.0.0.1', 'localhost')}/api/data/v9.2/$batch",
        ):
            with pytest.raises(TransportError, match="Refused"):
                run_sync(
                    conn.arequest(
                        "POST",
                        url,
                        content=b"--batch_x--\r\n",
                        headers={"Content-Type": "multipart/mixed; boundary=batch_x"},
                    )
                )
    record(AREA, "batch url", operations=2, leaks=len(elsewhere.seen), checks=2)
    assert elsewhere.seen == []


def test_push_whose_writes_are_redirected_elsewhere_sends_nothing_there(
    sandbox: Sandbox, front: Proxy, elsewhere: Proxy
) -> None:
    """The first two writes answer 307 to another host: refused, never followed; the push
    sends them again to the configured host, where each row lands once."""
    redirected = 0

    def rule(n: int, method: str, path: str) -> Action | None:
        nonlocal redirected
        if method == "POST" and redirected < 2:
            redirected += 1
            return answer(307, Location=f"{elsewhere.base_url}/api/data/v9.2/$batch")
        return None

    front.rule = rule
    tag = "redir" + uuid.uuid4().hex[:6]
    df = pd.DataFrame({"name": [f"{tag} {i}" for i in range(6)]})
    with through(sandbox, front) as conn:
        result = df.d365.push("accounts", mode="create", conn=conn, batch_size=3, progress=False)
        back = conn.read(
            "accounts", select=["name"], filter=where(name__startswith=tag), progress=False
        )
    record(
        AREA,
        "push redirected",
        faults=redirected,
        operations=1,
        leaks=len(elsewhere.seen),
        checks=1,
    )
    assert redirected == 2 and elsewhere.seen == []
    assert isinstance(result, PushReport)
    assert sorted(back["name"]) == sorted(df["name"]), "every row once"
    assert result.rows["status"].isin(["created", "failed"]).all()
