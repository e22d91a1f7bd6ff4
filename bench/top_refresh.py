"""The cost of one `top` refresh, measured in one process, as the view pays it.

    python bench/top_refresh.py REFRESHES

Builds a session and an engine as the shell does, then calls what the view's
background thread calls every interval (nsshell.commands.top.Refresher: a full scan
every 5th refresh, light ones between, and the user-namespace tree) REFRESHES
times after one untimed warm-up.  Prints one JSON object: per-refresh CPU (the
process's, threads included, plus any children's) and wall times in ms, which
refreshes were full scans, and the number of rows.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def cpu() -> float:
    own = time.process_time()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own + kids.ru_utime + kids.ru_stime


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    import nsshell.commands  # noqa: F401 - registers the commands
    from nsshell.commands.top import Refresher, snapshot
    from nsshell.engine import Engine
    from nsshell.render import Renderer
    from nsshell.session import Session
    sh = Session(interactive=False)
    Engine(sh, Renderer(mode="plain"))
    try:
        rows = snapshot(sh)                       # warm-up (imports, caches)
        refresh = Refresher(sh)
        cpu_ms, wall_ms, full = [], [], []
        for _ in range(n):
            full.append(refresh.n % refresh.FULL_EVERY == 0)
            c, w = cpu(), time.perf_counter()
            rows = refresh()
            cpu_ms.append(round((cpu() - c) * 1000, 2))
            wall_ms.append(round((time.perf_counter() - w) * 1000, 2))
    finally:
        sh.close_all()
    print(json.dumps({"cpu_ms": cpu_ms, "wall_ms": wall_ms, "full": full, "rows": len(rows)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
