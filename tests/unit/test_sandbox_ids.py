"""The sandbox's row ids made in bulk (`_references.new_ids`): RFC 4122 version 4 GUIDs."""

from __future__ import annotations

import uuid

from d365nb.sandbox._references import GUID, new_ids


def test_new_ids_are_distinct_version_4_guids_in_canonical_form() -> None:
    ids = new_ids(5000)
    assert len(ids) == len(set(ids)) == 5000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and GUID.match(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_new_ids_of_none_and_of_one() -> None:
    assert new_ids(0) == []
    (one,) = new_ids(1)
    assert uuid.UUID(one).version == 4
