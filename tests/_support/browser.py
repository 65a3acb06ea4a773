"""Plays the browser on the sandbox's HTML pages: fills and submits their forms."""

from __future__ import annotations

import ssl
import urllib.parse
from html.parser import HTMLParser

import httpx

from d365nb.sandbox import Sandbox
from d365nb.sandbox._directory import user_by_name


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method = "get"
        self.fields: dict[str, str] = {}
        self.radios: dict[str, list[str]] = {}
        self.buttons: list[tuple[str, str]] = []
        self._in_form = False
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and not self._done:
            self._in_form = True
            self.action = a.get("action", "")
            self.method = a.get("method", "get").lower()
        elif self._in_form and tag == "input":
            kind = a.get("type", "text").lower()
            if kind == "radio":
                self.radios.setdefault(a["name"], []).append(a.get("value", ""))
            elif kind in ("hidden", "text") and a.get("name"):
                self.fields[a["name"]] = a.get("value", "")
        elif self._in_form and tag == "button" and a.get("name"):
            self.buttons.append((a["name"], a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._in_form:
            self._in_form = False
            self._done = True


def parse_form(html: str) -> _Form:
    form = _Form()
    form.feed(html)
    assert form.action is not None, "the page has a form"
    return form


def sign_in_on_page(auth_uri: str, sb: Sandbox, *, user: str = "alex") -> httpx.Response:
    """GET the authorize URL, pick `user`, press the first (accepting) button."""
    upn = user_by_name(user).upn
    with httpx.Client(
        verify=ssl.create_default_context(cafile=sb.ca_cert),
        follow_redirects=False,
    ) as http:
        page = http.get(auth_uri)
        assert page.status_code == 200, page.text
        form = parse_form(page.text)
        data = dict(form.fields)
        for name, values in form.radios.items():
            assert upn in values, f"{upn} is offered on the sign-in page"
            data[name] = upn
        if form.buttons:
            name, value = form.buttons[0]
            data[name] = value
        action = urllib.parse.urljoin(str(page.url), form.action or "")
        return http.post(action, data=data)


def submit_form_post(page: httpx.Response) -> httpx.Response:
    """Submit a form_post hand-back page to its target, as its script would."""
    assert page.status_code == 200, page.text
    form = parse_form(page.text)
    assert form.method == "post"
    with httpx.Client() as http:
        return http.post(form.action or "", data=form.fields)
