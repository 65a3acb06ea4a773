"""The notebook helpers of `d365nb.sandbox`: device codes approved through the sandbox's
route (or a stop at once with the command), the token cache keyed by the sandbox's CA,
the device-login page's word on the role-less user, and the notebook progress bar."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from d365nb import AuthError, ConfigError
from d365nb._progress import bar_html
from d365nb.sandbox import Sandbox, SandboxInfo, connect, start
from d365nb.sandbox._connect import DeviceCodeApprover, sandbox_token_cache

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def manual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox that does not approve device codes by itself."""
    with start(data_dir=tmp_path_factory.mktemp("manual"), database=":memory:", rows=20) as sb:
        yield sb


def test_approve_as_signs_in_without_a_person(
    manual: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    with connect(manual, grant="device_code", approve_as="megan") as conn:
        conn.sign_in()
        assert conn.whoami().user_id
        assert "megan@" in conn.auth.identity()["name"]
    out = capsys.readouterr().out
    assert "approving device code" in out and "/_sandbox/devicecode/approve" in out


def test_approve_as_works_from_the_description_alone(manual: Sandbox) -> None:
    """Binder's kernels only have D365NB_SANDBOX: approval goes over HTTPS all the same."""
    info = SandboxInfo.from_mapping(manual.info())
    with connect(info, grant="device_code", approve_as="alex") as conn:
        conn.sign_in()
        assert conn.auth.signed_in


def test_a_refused_approval_stops_at_once_with_the_command(manual: Sandbox) -> None:
    conn = connect(manual, grant="device_code", approve_as="nobody")
    with pytest.raises(AuthError) as caught:
        conn.sign_in()
    conn.close()
    error = caught.value
    assert "did not approve device code" in str(error) and "nobody" in str(error)
    assert "d365nb sandbox --memory --auto-approve > sandbox.json" in (error.hint or "")


def test_an_unreachable_sandbox_stops_at_once(manual: Sandbox, tmp_path: Path) -> None:
    class Gone:
        base_url = "https://127.0.0.1:9"

        def approve(self, user_code: str, user: str | None = None) -> dict[str, Any]:
            raise httpx.ConnectError("All connection attempts failed")

    conn = connect(manual, grant="device_code", approve_as="alex")
    assert isinstance(conn.prompt, DeviceCodeApprover)
    conn.prompt.sandbox = Gone()
    with pytest.raises(AuthError) as caught:
        conn.sign_in()
    conn.close()
    assert "All connection attempts failed" in str(caught.value)
    assert "--auto-approve" in (caught.value.hint or "")


def test_approve_as_needs_the_device_code_grant(manual: Sandbox) -> None:
    with pytest.raises(ConfigError, match="approve_as"):
        connect(manual, approve_as="alex")


def test_token_cache_is_keyed_by_the_sandboxs_ca(
    manual: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("D365NB_TOKEN_CACHE_DIR", str(tmp_path / "tokens"))
    info = SandboxInfo.from_mapping(manual.info())
    folder = sandbox_token_cache(info, True)
    assert isinstance(folder, Path) and folder.parent == tmp_path / "tokens"
    assert folder.name.startswith("sandbox-")
    # Another sandbox (its own data dir, so its own CA) on the very same address: its own
    # cache, so a token of the first can never be sent to it.
    with start(data_dir=tmp_path / "other", database=":memory:", rows=5) as other:
        impostor = SandboxInfo.from_mapping({**other.info(), "service_url": info.service_url})
        assert sandbox_token_cache(impostor, True) != folder
    assert sandbox_token_cache(info, False) is False
    assert sandbox_token_cache(info, tmp_path / "mine") == tmp_path / "mine"  # as given


def test_second_connection_signs_in_silently(
    manual: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("D365NB_TOKEN_CACHE_DIR", str(tmp_path / "tokens"))
    with connect(manual, grant="device_code", approve_as="alex", token_cache=True) as first:
        first.sign_in()
    second = connect(manual, grant="device_code", token_cache=True)

    def must_not_prompt(item: Any) -> None:
        raise AssertionError("the second sign-in should come from the token cache")

    second.prompt = must_not_prompt
    second.sign_in()
    assert second.whoami().user_id
    second.close()
    # Without the cache (the default), a new device code is asked for.
    third = connect(manual, grant="device_code", approve_as="alex")
    asked: list[Any] = []
    approver = third.prompt

    def counting(item: Any) -> None:
        asked.append(item)
        approver(item)

    third.prompt = counting
    third.sign_in()
    third.close()
    assert len(asked) == 1


def test_device_login_page_warns_about_the_user_without_a_role(manual: Sandbox) -> None:
    with connect(manual, grant="device_code") as conn:
        code = conn.auth._backend.initiate_device_flow()["user_code"]
    with httpx.Client(verify=ssl.create_default_context(cafile=manual.ca_cert)) as client:
        page = client.post(f"{manual.base_url}/devicelogin", data={"otc": code}).text
    assert "Nestor Wilke" in page
    assert "no security role" in page and "403 Forbidden" in page


def test_progress_bar_html_shows_the_final_count() -> None:
    done = bar_html(
        {"n": 1234, "total": 1234, "elapsed": 2.0, "prefix": "Reading accounts"}, closed=True
    )
    assert "1,234/1,234 rows" in done and "width:100.0%" in done
    assert "--jp-success-color1" in done
    unknown = bar_html({"n": 300, "total": None, "elapsed": 1.0, "prefix": "Reading <x>"})
    assert "300 rows" in unknown and "&lt;x&gt;" in unknown
    waiting = bar_html(
        {"n": 10, "total": 40, "elapsed": 1, "postfix": "429: waiting 3 s", "prefix": "Pushing"}
    )
    assert "width:25.0%" in waiting and "429: waiting 3 s" in waiting


def test_approve_as_on_a_sandbox_that_approves_by_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with start(data_dir=tmp_path, database=":memory:", rows=5, auto_approve=True) as sb:
        with connect(sb, grant="device_code", approve_as="alex") as conn:
            conn.sign_in()
            assert conn.auth.signed_in
    assert "it approves codes itself" in capsys.readouterr().out
