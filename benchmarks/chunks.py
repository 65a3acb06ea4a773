"""Peak memory of a chunked read vs `read()`: every column of 200,000 accounts.

```bash
python -m benchmarks.chunks                      # 200,000 accounts, chunks of 20,000
python -m benchmarks.chunks --rows 50000 --chunksize 10000
```

Each way runs in a fresh child process, so its peak resident memory (`ru_maxrss`) is its
own: signed in and the metadata cached first (the baseline), then either `read()` kept
whole, or `read(chunksize=)` with each chunk summed and dropped.  The sandbox runs in a
process of its own.  Prints rows, seconds and peak RSS above the baseline for each way,
and checks that both saw the same rows (a sum of row hashes over every column), dtypes
and revenue total.  One run each: indicative.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from typing import Any

from d365nb.sandbox import start

__all__ = ["main"]

_CHILD = r"""
import json, resource, sys, time
import d365nb.sandbox
import pandas as pd

info = json.loads(sys.stdin.read())  # not argv: the sandbox's secrets stay out of ps
mode, chunksize, parallel = sys.argv[1], int(sys.argv[2]), sys.argv[3]
conn = d365nb.sandbox.connect(info)
conn.read("accounts", top=1, progress=False)  # sign-in and metadata: the baseline
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
begin = time.perf_counter()
par = {"on": True, "off": False}[parallel]


def digest(frame):
    # Sum of the rows' hashes (every column, values and types): equal for the same rows
    # in any order or cut.  Multi-select choices hold lists: hashed as tuples.
    lists = frame.select_dtypes("object").columns
    frame = frame.assign(**{c: frame[c].map(lambda v: tuple(v) if isinstance(v, list) else v)
                            for c in lists})
    return int(pd.util.hash_pandas_object(frame, index=False).to_numpy().sum(dtype="uint64"))


if mode == "read":
    df = conn.read("accounts", parallel=par, progress=False)
    rows, total, chunks = len(df), float(df["revenue"].sum()), 1
else:
    rows, total, chunks, rowhash, dtypes = 0, 0.0, 0, 0, None
    for chunk in conn.read("accounts", parallel=par, progress=False, chunksize=chunksize):
        rows, total, chunks = rows + len(chunk), total + float(chunk["revenue"].sum()), chunks + 1
        rowhash = (rowhash + digest(chunk)) % 2**64
        dtypes = [str(t) for t in chunk.dtypes]
        del chunk
took = time.perf_counter() - begin
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if mode == "read":  # after the peak: the digest's own arrays are not the read's
    rowhash, dtypes = digest(df), [str(t) for t in df.dtypes]
print(json.dumps({"rows": rows, "total": round(total, 2), "chunks": chunks,
                  "digest": str(rowhash), "dtypes": dtypes,
                  "seconds": round(took, 2), "base_mb": round(base / 1024, 1),
                  "peak_mb": round(peak / 1024, 1),
                  "above_base_mb": round((peak - base) / 1024, 1)}))
"""


def _child(info: dict[str, Any], mode: str, chunksize: int, parallel: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, str(chunksize), parallel],
        input=json.dumps(info),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:  # the child's own error, not its command line
        raise SystemExit(f"the {mode} child failed:\n{done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the comparison; returns the figures (also printed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunksize", type=int, default=20_000)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"rows": args.rows, "chunksize": args.chunksize}
    with (
        tempfile.TemporaryDirectory() as data_dir,
        start(subprocess=True, data_dir=data_dir, database=":memory:", rows=args.rows) as sb,
    ):
        info = sb.info()
        for parallel in ("on", "off"):
            for mode in ("read", "chunks"):
                results[f"{mode}_parallel_{parallel}"] = _child(
                    info, mode, args.chunksize, parallel
                )
    for parallel in ("on", "off"):
        whole = results[f"read_parallel_{parallel}"]
        chunked = results[f"chunks_parallel_{parallel}"]
        assert (whole["rows"], whole["total"]) == (chunked["rows"], chunked["total"])
        # The same rows, values and dtypes (sum of row hashes, so order and cut don't count).
        assert (whole["digest"], whole["dtypes"]) == (chunked["digest"], chunked["dtypes"])
        results[f"memory_ratio_parallel_{parallel}"] = round(
            chunked["above_base_mb"] / max(whole["above_base_mb"], 0.1), 3
        )
    for key, value in results.items():
        print(f"{key:>26}: {value}")
    return results


if __name__ == "__main__":
    main()
