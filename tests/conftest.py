"""Session fixtures: one sandbox over real HTTPS on loopback, and a clean environment."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from d365nb.sandbox import Sandbox, start
from d365nb.sandbox._directory import USERS, user_by_name

# Variables that would make HTTP clients trust another CA or go through a proxy, silently
# overriding what a test passes (reference/identity-protocol.md §2.3).
_ENVIRON_KEYS = (
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "https_proxy",
    "http_proxy",
    "all_proxy",
)


#: Folders whose every test starts kernels, servers, browsers or whole harnesses: `slow`.
SLOW_FOLDERS = frozenset({"benchmarks", "browser", "dask", "kernel", "notebooks"})
#: Single tests elsewhere that take over ~10 s on 2 cores.
SLOW_TESTS = frozenset(
    {
        "test_large_push_is_chunked_and_complete",
        "test_sandbox_restarted_mid_read",
        "test_throttling_and_503s_mid_read_end_with_every_row",
        "test_round_trip_reproduces_the_wire_values",
        "test_reads_and_pushes_from_three_processes_at_once",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the slow tests, so that ``pytest -m "not slow"`` is the fast loop."""
    root = Path(__file__).resolve().parent
    for item in items:
        try:
            folder = Path(str(item.path)).resolve().relative_to(root).parts[0]
        except ValueError:
            continue
        name = getattr(item, "originalname", item.name)
        if folder in SLOW_FOLDERS or name in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where pushes record unfinished attempts during the tests (`D365NB_STATE_DIR`)."""
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="session")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's `XDG_CACHE_HOME`: token and metadata caches of one test run, apart from the
    user's and from other runs (sandboxes reuse loopback ports, so another run's cached
    metadata for `https://127.0.0.1:PORT` would describe a different sandbox)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, state_dir: Path, cache_home: Path) -> None:
    """Remove CA-bundle and proxy variables from the environment during each test; keep
    push journals and caches out of the user's folders."""
    for key in _ENVIRON_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("D365NB_STATE_DIR", str(state_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))


@pytest.fixture(scope="session")
def sandbox_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session sandbox's data directory (CA, keys): a temporary folder."""
    return tmp_path_factory.mktemp("sandbox")


@pytest.fixture(scope="session")
def sandbox(sandbox_data_dir: Path) -> Iterator[Sandbox]:
    """A sandbox for the whole session: a server thread, in-memory database, few rows."""
    with start(
        data_dir=sandbox_data_dir, database=":memory:", rows=50, device_code_interval=1
    ) as sb:
        yield sb


@pytest.fixture
def https(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """An httpx client that trusts the session sandbox's CA (and no environment)."""
    context = ssl.create_default_context(cafile=sandbox.ca_cert)
    with httpx.Client(verify=context, trust_env=False, timeout=30) as client:
        yield client


@pytest.fixture
def requests_session(sandbox: Sandbox) -> Iterator[requests.Session]:
    """A requests session trusting the sandbox's CA: an `http_client` for msal."""
    with requests.Session() as session:
        session.trust_env = False
        session.verify = sandbox.ca_cert
        yield session


# -- playing the browser against the sandbox's HTML pages


class FormParser(HTMLParser):
    """The forms of a page: action, method and the inputs' names and values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": a.get("method", "get")})
            self.forms[-1]["inputs"] = []
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"].append(a)


def _forms(html: str) -> list[dict[str, Any]]:
    parser = FormParser()
    parser.feed(html)
    return parser.forms


def _sign_in(
    browser: httpx.Client, auth_uri: str, *, user: str, action: str = "accept"
) -> httpx.Response:
    """Play the person at the browser: open the authorize URL, pick `user`, submit."""
    page = browser.get(auth_uri)
    assert page.status_code == 200, page.text
    (form,) = _forms(page.text)
    fields = {i["name"]: i["value"] for i in form["inputs"] if i.get("type") == "hidden"}
    users = [i["value"] for i in form["inputs"] if i.get("type") == "radio"]
    assert users == [u.upn for u in USERS]
    fields.update(user=user_by_name(user).upn, action=action)
    target = httpx.URL(auth_uri).join(form["action"])
    return browser.post(target, data=fields)


@pytest.fixture
def forms() -> Callable[[str], list[dict[str, Any]]]:
    """`forms(html)`: the forms of a page (action, method, inputs)."""
    return _forms


@pytest.fixture
def sign_in() -> Callable[..., httpx.Response]:
    """`sign_in(browser, auth_uri, user=..., action="accept")`: sign in on the authorize page."""
    return _sign_in


@pytest.fixture(autouse=True)
def close_connections() -> Iterator[None]:
    """Close every connection a test opened (their sockets would leak into the next test)."""
    from d365nb._session import _SESSIONS as _CONNECTIONS

    before = set(_CONNECTIONS)
    yield
    for key in set(_CONNECTIONS) - before:
        conn = _CONNECTIONS.get(key)
        if conn is not None:
            conn.close()
