"""No secret or token in any repr, str, HTML, log record (DEBUG, every logger), exception
text or printed output of a full session: sign-ins of three kinds, reads, pushes, errors."""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

import pandas as pd
import pytest

import d365nb
import d365nb._accessor  # noqa: F401 - registers df.d365
from d365nb import AuthError, D365Error, PartialReadError
from d365nb._setup import error_lines
from d365nb._transport import RetryPolicy
from d365nb.sandbox import Sandbox
from d365nb.sandbox._connect import connect_to
from tests._support.ledger import record
from tests._support.oauth import device_code_tokens
from tests._support.proxy import Action, Proxy
from tests.reliability.conftest import through

pytestmark = pytest.mark.sandbox

WRONG_SECRET = "Wr0ng~secret.value-" + "x" * 12


def _shown(obj: Any) -> list[str]:
    """Every way a notebook or a log could show `obj`."""
    texts = [repr(obj), str(obj)]
    for method in ("_repr_html_", "_repr_markdown_"):
        if hasattr(obj, method):
            texts.append(str(getattr(obj, method)()))
    if isinstance(obj, BaseException):
        texts += error_lines(obj)
        texts += [repr(getattr(obj, name, "")) for name in ("message", "hint", "args")]
        cause = obj.__cause__
        if cause is not None:
            texts += [repr(cause), str(cause)]
    if isinstance(obj, pd.DataFrame):
        texts += [repr(obj.attrs), obj.to_string()]
    return texts


def _fragments(secret: str) -> list[str]:
    """The secret, and for a JWT its payload and signature (each alone identifies it)."""
    if secret.count(".") == 2 and secret.startswith("eyJ"):
        _, payload, signature = secret.split(".")
        return [secret, payload[:40], signature[:40]]
    return [secret]


def test_a_full_session_leaks_nothing(
    sandbox: Sandbox,
    front: Proxy,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("", "d365nb", "httpx", "httpcore", "msal", "urllib3", "asyncio"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    shown: list[str] = []
    secrets: list[str] = [sandbox.client_secret, WRONG_SECRET]

    # 1. client credentials: whoami, reads, a push, a dry run, a failing push.
    with connect_to(sandbox) as app:
        shown += _shown(app.whoami()) + _shown(app) + _shown(app.settings) + _shown(app.auth)
        frame = app.read("accounts", select=["name", "revenue"], top=5, progress=False)
        shown += _shown(frame)
        tag = "leakcheck"
        new = pd.DataFrame({"name": [f"{tag} 1", f"{tag} 2"], "revenue": [1.0, 2.0]})
        report = new.d365.push("accounts", mode="create", conn=app, progress=False)
        shown += _shown(report) + _shown(report.rows) + _shown(report.frame)
        plan = frame.d365.push(dry_run=True, progress=False)
        shown += _shown(plan)
        bad = pd.DataFrame(
            {"name": ["x"], "parentaccountid": ["00000000-0000-4000-8000-00000000dead"]}
        )
        failed = bad.d365.push("accounts", mode="create", conn=app, progress=False)
        shown += _shown(failed)
        try:
            app.read("nosuchtable", progress=False)
        except D365Error as exc:
            shown += _shown(exc)
        secrets.append(app.auth.current.token)  # type: ignore[union-attr]
        shown += _shown(app.auth.current)

    # 2. a read that stops part-way (a cut connection, no retries).
    front.rule = lambda n, m, p: Action(cut=True) if p.endswith("/accounts") and n > 3 else None
    with through(sandbox, front, retry=RetryPolicy(max_attempts=1)) as cut:
        try:
            cut.read("accounts", select=["name"], page_size=5, parallel=False, progress=False)
            raise AssertionError("the cut should have stopped the read")
        except PartialReadError as exc:
            shown += _shown(exc) + _shown(exc.partial)
        secrets.append(cut.auth.current.token)  # type: ignore[union-attr]

    # 3. a wrong client secret: a clear AuthError that does not repeat it.
    wrong = connect_to(sandbox, client_secret=WRONG_SECRET)
    with wrong, pytest.raises(AuthError) as info:
        wrong.whoami()
    shown += _shown(info.value) + _shown(wrong) + _shown(wrong.settings)

    # 4. a refresh token (device code, elsewhere) and an access token given by hand.
    tokens = device_code_tokens(sandbox, "megan")
    secrets += [tokens["refresh_token"], tokens["access_token"]]
    with connect_to(sandbox, grant="refresh_token", refresh_token=tokens["refresh_token"]) as rt:
        shown += _shown(rt.whoami()) + _shown(rt) + _shown(rt.settings)
        secrets.append(rt.auth.current.token)  # type: ignore[union-attr]
    given = d365nb.connect(
        service_url=sandbox.service_url,
        access_token=tokens["access_token"],
        verify=sandbox.ca_cert,
        token_cache=False,
    )
    with given:
        shown += _shown(given.whoami()) + _shown(given) + _shown(given.settings)
        shown.append(given.settings.to_connection_string())
    with_secret = connect_to(sandbox)
    shown.append(with_secret.settings.to_connection_string())
    with_secret.close()

    # 5. browser sign-in: a pasted address whose code is refused must not be repeated.
    code = "AuthCode-" + "k" * 24
    with connect_to(sandbox, grant="auth_code") as browser:
        links: list[Any] = []
        browser.prompt = links.append
        browser.sign_in(loopback=False, open_browser=False)
        state = urllib.parse.parse_qs(urllib.parse.urlsplit(links[-1].auth_uri).query)["state"]
        for pasted in (
            f"http://localhost/?code={code}&state={state[0]}",
            f"http://localhost/?code={code}&state=another",
        ):
            with pytest.raises(AuthError) as refused:
                browser.sign_in(redirected_url=pasted)
            shown += _shown(refused.value)
            browser.sign_in(loopback=False, open_browser=False)
            state = urllib.parse.parse_qs(urllib.parse.urlsplit(links[-1].auth_uri).query)["state"]
        shown += _shown(browser) + [repr(link) for link in links]
    secrets.append(code)

    out = capsys.readouterr()
    shown += [caplog.text, out.out, out.err]
    shown += [r.getMessage() for r in caplog.records]
    shown += [repr(r.args) for r in caplog.records]
    assert len(caplog.records) > 20, "DEBUG logging of the session was captured"

    leaks = [
        (fragment[:12] + "...", text[:200])
        for secret in secrets
        for fragment in _fragments(secret)
        for text in shown
        if fragment in text
    ]
    record(
        "security/no secrets in output",
        "full session",
        operations=16,
        leaks=len(leaks),
        checks=len(secrets) * len(shown),
    )
    assert leaks == []
