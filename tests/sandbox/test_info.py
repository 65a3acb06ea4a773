"""`SandboxInfo`: the JSON line `d365nb sandbox` prints and `D365NB_SANDBOX`, in one place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from d365nb import ConfigError
from d365nb.sandbox import Sandbox, SandboxInfo
from d365nb.sandbox._info import SANDBOX_ENV, find_sandbox


def test_from_mapping_of_a_running_sandbox_round_trips(sandbox: Sandbox) -> None:
    info = SandboxInfo.from_mapping(sandbox.info())
    assert info == sandbox.describe()
    assert json.loads(info.to_json()) == sandbox.info()
    assert info.origin == sandbox.base_url == info.base_url
    assert info.client_secret is not None
    assert info.client_secret not in repr(info)


def test_from_mapping_names_the_missing_key() -> None:
    with pytest.raises(ConfigError) as caught:
        SandboxInfo.from_mapping({"service_url": "https://127.0.0.1:1/api/data/v9.2/"})
    assert "tenant" in str(caught.value) and "ca_cert" in str(caught.value)
    assert caught.value.field == SANDBOX_ENV


def test_from_env_reads_the_json_or_a_file(sandbox: Sandbox, tmp_path: Path) -> None:
    line = json.dumps(sandbox.info())
    file = tmp_path / "sandbox.json"
    file.write_text(line + "\nanything after the first line\n")
    assert SandboxInfo.from_env({SANDBOX_ENV: line}) == sandbox.describe()
    assert SandboxInfo.from_env({SANDBOX_ENV: str(file)}) == sandbox.describe()
    assert SandboxInfo.from_env({}) is None
    assert SandboxInfo.from_env({SANDBOX_ENV: "  "}) is None
    for bad in ("{not json", str(tmp_path / "missing.json"), "[1, 2]"):
        with pytest.raises(ConfigError):
            SandboxInfo.from_env({SANDBOX_ENV: bad})


def test_find_sandbox_prefers_this_process_and_ignores_bad_descriptions(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = find_sandbox({SANDBOX_ENV: "{not json"})
    assert found is not None and found.tenant == sandbox.tenant
    from d365nb.sandbox import _info

    monkeypatch.setattr(_info, "_sandboxes_in_process", list)
    assert find_sandbox({SANDBOX_ENV: "{not json"}) is None
    assert find_sandbox({}) is None
    assert find_sandbox({SANDBOX_ENV: json.dumps(sandbox.info())}) == sandbox.describe()


def test_running_lists_started_sandboxes(sandbox: Sandbox) -> None:
    import d365nb.sandbox

    assert sandbox in d365nb.sandbox.running()
