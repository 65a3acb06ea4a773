"""The partition planner's pure parts: slices, cut points, filters."""

from __future__ import annotations

from d365nb.dask._ranges import COUNT_CAP, Slice, cut_points, range_filters, split


def test_split_covers_the_span_without_gaps() -> None:
    spans = split(0, 10, 3)
    assert spans[0][0] == 0 and spans[-1][1] == 10
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert split(5, 7, 10) == [(5, 6), (6, 7)]  # never below one second


def test_cut_points_balance_weight_not_time() -> None:
    weights = [1, 1, 1, 1, 100, 100, 1, 1, 1, 1]
    slices = [Slice(a, b, w) for (a, b), w in zip(split(0, 10, 10), weights, strict=True)]
    assert cut_points(slices, 2) == [5]  # the two dense seconds land in different halves
    even = [Slice(a, b, 10) for a, b in split(0, 100, 100)]
    assert cut_points(even, 4) == [25, 50, 75]
    assert cut_points(even, 1) == []


def test_capped_slices_weigh_the_cap() -> None:
    assert Slice(0, 1, COUNT_CAP).capped and Slice(0, 1, COUNT_CAP).weight == COUNT_CAP
    assert not Slice(0, 1, 10).capped


def test_range_filters_cover_every_row_once() -> None:
    assert range_filters([]) == [None]
    first, middle, last = range_filters([0, 60])
    assert first == "(createdon lt 1970-01-01T00:00:00Z or createdon eq null)"
    assert middle == "createdon ge 1970-01-01T00:00:00Z and createdon lt 1970-01-01T00:01:00Z"
    assert last == "createdon ge 1970-01-01T00:01:00Z"
