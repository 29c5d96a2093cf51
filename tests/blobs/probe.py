"""Run by the conformance tests in a process of their own (``python -m tests.blobs.probe``), so
what they measure or kill is only this: one store operation.

``transfer URL ENDPOINT KEY SRC DEST``: put SRC as KEY, get it back to DEST, print JSON with the
process's peak RSS (VmHWM) before and after each, and the seconds each took.
``put URL ENDPOINT KEY SRC``: put SRC as KEY and nothing else (the test kills it midway).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ftserve.blobs import open_blobs_url


def peak_rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(argv: list[str]) -> None:
    command, url, endpoint, key, src = argv[:5]
    blobs = open_blobs_url(url, Path("/nonexistent"), endpoint_url=endpoint or None)
    if command == "put":
        print("started", flush=True)
        blobs.put_file(key, Path(src))
        return
    dest = Path(argv[5])
    # A small round trip first, so the baseline includes the imports and a connection.
    warm = Path(src).with_name("warm.bin")
    warm.write_bytes(b"w" * 4096)
    blobs.put_file("warm/probe", warm)
    blobs.get_file("warm/probe", dest.with_name("warm.out"))
    blobs.delete("warm/probe")
    base = peak_rss()
    t0 = time.monotonic()
    blobs.put_file(key, Path(src))
    t1 = time.monotonic()
    after_put = peak_rss()
    blobs.get_file(key, dest)
    t2 = time.monotonic()
    after_get = peak_rss()
    print(
        json.dumps(
            {
                "base": base,
                "after_put": after_put,
                "after_get": after_get,
                "put_s": t1 - t0,
                "get_s": t2 - t1,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
