"""Memory properties of a read that hold by construction (no timing, no RSS sampling).

A large read's peak memory is set by what is alive at once: parsed pages, typed chunks and
the frame.  These tests pin the two rules that keep it near the frame's size: a parsed page
is dropped before the next request is awaited (so parallel ranges do not each hold one),
and the final frame takes the ranges' chunks instead of copying finished parts together.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Sequence
from typing import Any

import httpx
import orjson
import pandas as pd
import pytest

from d365nb import Connection, _reader
from d365nb._frames import FrameBuilder

pytestmark = pytest.mark.sandbox

COLUMNS = ["name", "numberofemployees", "revenue", "createdon", "industrycode"]


class _Body(dict[str, Any]):
    """A parsed response body that can be watched with a weak reference."""


def test_a_parsed_page_is_freed_before_the_next_is_fetched(
    conn: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies: list[weakref.ref[_Body]] = []
    alive_at_parse: list[int] = []

    def loads(data: bytes) -> Any:
        # CPython frees an unreferenced body at once, so counting live ones is exact.
        alive_at_parse.append(sum(ref() is not None for ref in bodies))
        body = _Body(orjson.loads(data))
        bodies.append(weakref.ref(body))
        return body

    monkeypatch.setattr(_reader, "_loads", loads)
    df = conn.read("accounts", select=COLUMNS, page_size=4, parallel=4, progress=False)
    assert len(df) == conn.read("accounts", select=["name"], progress=False).shape[0]
    assert len(alive_at_parse) > 10  # bounds, the first page, then every range's pages
    assert max(alive_at_parse) == 0
    del df
    assert all(ref() is None for ref in bodies)


def test_the_final_frame_takes_the_chunks_of_every_range(
    conn: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    merges: list[tuple[list[FrameBuilder], bool]] = []
    original = FrameBuilder.merge.__func__  # type: ignore[attr-defined]

    def merge(
        cls: type[FrameBuilder], builders: Sequence[FrameBuilder], *, consume: bool = False
    ) -> FrameBuilder:
        merges.append((list(builders), consume))
        merged: FrameBuilder = original(cls, builders, consume=consume)
        return merged

    monkeypatch.setattr(FrameBuilder, "merge", classmethod(merge))
    split = conn.read("accounts", select=COLUMNS, page_size=4, parallel=4, progress=False)
    whole = conn.read("accounts", select=COLUMNS, parallel=False, progress=False)
    pd.testing.assert_frame_equal(
        split.sort_values("accountid", ignore_index=True),
        whole.sort_values("accountid", ignore_index=True),
    )
    builders, consume = merges[0]
    assert len(builders) > 2 and consume
    for builder in builders:  # emptied: the merged builder held the only chunks
        assert all(not c.chunks and not c.names for c in builder._columns.values())
        assert not builder._etags
        with pytest.raises(RuntimeError, match="finished"):
            builder.finish()


def test_no_page_waits_for_the_cyclic_garbage_collector(conn: Connection) -> None:
    """httpx keeps each response in a reference cycle; the reader breaks it, so a page's
    body is freed when the page is converted, not at the next full collection (about
    200 MB of bodies at once on a 1M-row read)."""
    conn.read("accounts", select=["name"], top=1, progress=False)  # sign-in, metadata
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        df = conn.read("accounts", select=COLUMNS, page_size=4, parallel=4, progress=False)
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, httpx.Response)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert len(df) > 8, "several pages were read"
    assert left == [], f"{len(left)} responses were only freed by the garbage collector"
