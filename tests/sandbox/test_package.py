"""`d365nb.sandbox` is a lazy package: importing it (or its contract) loads no server code."""

from __future__ import annotations

import json
import subprocess
import sys

import d365nb.sandbox


def _modules_after(code: str) -> dict[str, bool]:
    probe = (
        f"{code}\nimport json, sys\n"
        "print(json.dumps({m: m in sys.modules for m in "
        "('starlette', 'uvicorn', 'd365nb.sandbox._server', 'd365nb.sandbox._app')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    loaded: dict[str, bool] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_d365nb_and_the_sandbox_package_pulls_no_server() -> None:
    loaded = _modules_after("import d365nb\nimport d365nb.sandbox")
    assert loaded == dict.fromkeys(loaded, False)


def test_the_contract_imports_without_the_server() -> None:
    loaded = _modules_after(
        "from d365nb.sandbox import SandboxInfo\nSandboxInfo.from_env({})\n"
        "import d365nb.sandbox\nd365nb.sandbox.running()"
    )
    assert loaded == dict.fromkeys(loaded, False)


def test_public_names_resolve_and_belong_to_the_package() -> None:
    assert sorted(d365nb.sandbox.__all__) == d365nb.sandbox.__all__
    for name in d365nb.sandbox.__all__:
        value = getattr(d365nb.sandbox, name)
        assert getattr(value, "__module__", "d365nb.sandbox") == "d365nb.sandbox", name
        assert name in dir(d365nb.sandbox)


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        d365nb.sandbox.nothing_here  # noqa: B018
    except AttributeError as exc:
        assert "nothing_here" in str(exc)
    else:
        raise AssertionError("no AttributeError")
