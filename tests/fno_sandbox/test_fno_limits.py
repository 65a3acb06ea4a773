"""F&O throttling: priority-based 429 storms and user-based limits, with `Retry-After`."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from d365nb.sandbox import Sandbox

from .conftest import FnoUser

Knobs = Callable[..., dict[str, object]]
RESOURCE = (
    "This request could not be processed at this time due to system experiencing high "
    "resource utilization."
)


def test_a_429_storm_then_recovery(fno: httpx.Client, knobs: Knobs) -> None:
    knobs(throttle_next=3, retry_after_seconds=2)
    answers = [fno.get("/data/Currencies") for _ in range(4)]
    assert [a.status_code for a in answers] == [429, 429, 429, 200]
    for throttled in answers[:3]:
        assert throttled.headers["retry-after"] == "2"
        error = throttled.json()["error"]
        assert (error["code"], error["message"]) == ("", RESOURCE)


def test_priority_decides_who_is_throttled(
    fno: httpx.Client, fno_user: FnoUser, fno_sandbox: Sandbox, knobs: Knobs
) -> None:
    megan = fno_user("megan")
    knobs(
        priorities={
            fno_sandbox.confidential_client_id: "High",
            "megan@contoso.onmicrosoft.com": "Low",
        },
        resource_pressure="medium",
        retry_after_seconds=7,
    )
    low = megan.get("/data/Currencies")
    assert low.status_code == 429 and low.headers["retry-after"] == "7"
    assert fno.get("/data/Currencies").status_code == 200  # High is not throttled
    knobs(resource_pressure="high")
    assert fno.get("/data/Currencies").status_code == 429
    knobs(resource_pressure="none")
    assert megan.get("/data/Currencies").status_code == 200


def test_user_based_request_limit(fno: httpx.Client, knobs: Knobs) -> None:
    fno.delete("/_sandbox/knobs")  # fresh counters
    knobs(max_requests_per_window=3, window_seconds=120)
    statuses = [fno.get("/data/Currencies").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = fno.get("/data/Currencies")
    assert limited.json()["error"]["message"] == (
        "Number of requests exeeded the limit of 3 over the time window of 120 seconds."
    )
    assert 0 < int(limited.headers["retry-after"]) <= 120


def test_unknown_knobs_are_refused(fno: httpx.Client) -> None:
    response = fno.post("/_sandbox/knobs", json={"resource_presure": "high"})
    assert response.status_code == 400
    assert "Unknown F&O knob" in response.json()["message"]


@pytest.mark.parametrize("level", ["low", "medium", "high"])
def test_pressure_levels_are_ordered(fno: httpx.Client, knobs: Knobs, level: str) -> None:
    knobs(resource_pressure=level)  # the integration app is Medium by default
    expected = 200 if level == "low" else 429
    assert fno.get("/data/Currencies").status_code == expected
