"""A child process that pushes `make_frame(tag, n)` to a sandbox (killed mid-push by tests).

Usage: python tests/reliability/_push_child.py '<json: info, tag, n, ids, key, batch_size>'
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    import d365nb
    import d365nb._accessor  # noqa: F401 - registers df.d365
    from tests.reliability._helpers import make_frame

    job = json.loads(sys.argv[1])
    info = job["info"]
    conn = d365nb.connect(
        service_url=info["service_url"],
        token_uri=info["token_uri"],
        client_id=info["confidential_client_id"],
        client_secret=info["client_secret"],
        grant="client_credentials",
        verify=info["ca_cert"],
        token_cache=False,
    )
    frame = make_frame(job["tag"], job["n"], ids=job["ids"])
    print("started", flush=True)
    report = frame.d365.push(
        "accounts",
        key=job.get("key"),
        conn=conn,
        batch_size=job["batch_size"],
        parallel=False,
        progress=False,
    )
    print(json.dumps(report.counts), flush=True)
    conn.close()


if __name__ == "__main__":
    main()
