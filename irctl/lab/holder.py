"""Open N connections to HOST:PORT from one process and hold them (a storm, an overload).

    python -m irctl.lab.holder HOST PORT N READY_FILE

Writes how many it holds to READY_FILE once done, then sleeps until signalled. One process
holds at most 15,000 (the machine allows 20,000 fds per process): callers spread more
over several processes.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor

MAX_PER_PROCESS = 15_000


def _connect(host: str, port: int) -> socket.socket | None:
    for _attempt in range(20):
        try:
            return socket.create_connection((host, port), timeout=5)
        except OSError:
            time.sleep(0.05)
    return None


def main(argv: list[str] | None = None) -> None:
    host, port, count, ready = (argv or sys.argv[1:])[:4]
    n = min(int(count), MAX_PER_PROCESS)
    # Connect from a few threads: through packet loss a lost SYN costs a second, and one at
    # a time a storm of thousands would take minutes to build.
    with ThreadPoolExecutor(max_workers=32) as pool:
        held = [s for s in pool.map(lambda _: _connect(host, int(port)), range(n)) if s]
    with open(ready + ".tmp", "w") as fh:
        fh.write(str(len(held)))
    os.replace(ready + ".tmp", ready)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
