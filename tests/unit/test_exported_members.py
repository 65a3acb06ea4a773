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
