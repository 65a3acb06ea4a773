"""The public surface is exactly `d365nb.__all__`: sorted, complete, importable."""

from __future__ import annotations
import __future__

import d365nb


def test_all_is_sorted_and_unique() -> None:
    names = [n for n in d365nb.__all__ if n != "__version__"]
    assert names == sorted(names)
    assert len(set(d365nb.__all__)) == len(d365nb.__all__)


def test_all_matches_public_names() -> None:
    public = {
        name
        for name, value in vars(d365nb).items()
        if not name.startswith("_") and not isinstance(value, (type(d365nb), __future__._Feature))
    }
    assert public == set(d365nb.__all__) - {"__version__"}


def test_exported_objects_claim_the_package() -> None:
    for name in d365nb.__all__:
        obj = getattr(d365nb, name)
        if isinstance(obj, type):
            assert obj.__module__ == "d365nb", name


def test_every_error_derives_from_the_root() -> None:
    errors = [getattr(d365nb, n) for n in d365nb.__all__ if n.endswith("Error")]
    assert errors, "the error tree is exported"
    for err in errors:
        assert issubclass(err, d365nb.D365Error)


#: The public API the README and notebooks rely on (grown by issues 14, 17, 18 and 23):
#: removing or renaming one of these breaks users, so it takes a change here too.
PUBLIC_API = {
    "Analysis",
    "AuthError",
    "Changes",
    "Chunks",
    "ColumnTypeWarning",
    "ConfigError",
    "Connection",
    "D365Error",
    "D365Warning",
    "DeltaExpiredError",
    "F",
    "FnoConnection",
    "InsecureTransportWarning",
    "InvalidFrameError",
    "ODataError",
    "PartialReadError",
    "PushError",
    "PushOptions",
    "PushPlan",
    "PushReport",
    "Query",
    "RetryPolicy",
    "Settings",
    "ThrottledError",
    "TransportError",
    "WhoAmI",
    "__version__",
    "connect",
    "connection",
    "literal",
    "setup",
    "where",
}
SANDBOX_API = {
    "Sandbox",
    "SandboxInfo",
    "SandboxOptions",
    "connect",
    "default_data_dir",
    "notebook",
    "running",
    "start",
}


def test_the_public_api_is_pinned() -> None:
    assert set(d365nb.__all__) >= PUBLIC_API, sorted(PUBLIC_API - set(d365nb.__all__))
    extra = set(d365nb.__all__) - PUBLIC_API
    assert not extra, f"new public names {sorted(extra)}: add them to PUBLIC_API on purpose"


def test_the_sandbox_api_is_pinned_and_lazy() -> None:
    import d365nb.sandbox as sandbox

    assert set(sandbox.__all__) == SANDBOX_API
    assert sandbox.__all__ == sorted(sandbox.__all__)
    for name in sandbox.__all__:
        assert getattr(sandbox, name) is not None, name
