"""Hypothesis strategies for the raw JSON values of each converter kind, odd ones included.

Shared by `test_dtypes` and `test_frames`, which check that the fast (Arrow) path of phase 1
gives what the straightforward Python path gives, for the values the service sends and for
values that do not fit.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

__all__ = ["JUNK", "RAW_VALUES", "SERVICE_STAMPS", "STAMPS"]


def _stamp(
    year: int, month: int, day: int, time: list[int], fraction: str, sep: str, zone: str
) -> str:
    """ISO 8601-like text, valid or not: every part may be out of range or left out."""
    text = f"{year:04d}-{month:02d}-{day:02d}"
    if time:
        text += sep + ":".join(f"{t:02d}" for t in time) + fraction + zone
    return text


STAMPS = st.builds(
    _stamp,
    st.integers(0, 10000),
    st.integers(0, 13),
    st.integers(0, 32),
    st.lists(st.integers(0, 61), max_size=3),
    st.sampled_from(["", ".", ".1", ".123", ".123456", ".1234567", ".123456789", ",5"]),
    st.sampled_from(["T", " ", "t"]),
    st.sampled_from(["", "Z", "z", "+02:00", "-05:30", "+0200", "+02", "+24:00", " Z"]),
) | st.dates().map(str)
SERVICE_STAMPS = st.builds(
    lambda stamp, digits, zone: (
        stamp.isoformat(timespec="seconds")
        + f".{stamp.microsecond:06d}"[: digits + 1 if digits else 0]
        + zone
    ),
    st.datetimes(),
    st.integers(0, 6),
    st.sampled_from(["Z", "Z", "+02:00", "-05:30", "+0200", "+02", "-00:00"]),
)
_NUMBERS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**31) - 2, 2**31 + 2),
    st.integers(-(2**64), 2**64),
    st.floats(),
    st.floats(-(2**31), 2**31).map(round).map(float),
)
JUNK = st.one_of(st.text(max_size=4), st.integers(0, 2), st.sampled_from([1.0, float("nan"), [1]]))
RAW_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "int32": _NUMBERS,
    "choice": _NUMBERS,
    "int64": _NUMBERS,
    "float": _NUMBERS,
    "money": _NUMBERS,
    "bool": st.one_of(st.none(), st.booleans()),
    "datetime": st.one_of(st.none(), SERVICE_STAMPS),
    "date": st.one_of(st.none(), st.dates().map(str)),
    "string": st.one_of(st.none(), st.text(max_size=6)),
    "guid": st.one_of(st.none(), st.uuids().map(str)),
}
#: Kinds read as Python values, and the parts of a lookup.
RAW_VALUES.update(
    {
        "multichoice": st.one_of(
            st.none(), st.lists(st.sampled_from(["1", "2", "3", "7"]), max_size=3).map(",".join)
        ),
        "decimal": _NUMBERS,
        "lookup": st.one_of(st.none(), st.uuids().map(str)),
        "lookup_table": st.one_of(st.none(), st.sampled_from(["account", "contact", "team"])),
        "label": st.one_of(st.none(), st.text(max_size=6)),
    }
)
