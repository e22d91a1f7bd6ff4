"""A few hundred generated command lines through -c, a script file and stdin, as root in a
throwaway namespace sandbox and as uid 65534 on the host (tests/fuzz/run.py): no traceback,
no internal error, no hang, no process killed, no stray stderr, nothing left behind.
The full run (5,000+ lines per user) is `python tests/fuzz/run.py`."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fuzz"))


def test_generated_lines_end_in_clear_errors_only(rootless_ok):
    import run as fuzz_run
    seed = int(os.environ.get("NSSHELL_FUZZ_SEED", "0"))
    counts, findings = fuzz_run.fuzz(count=100, seed=seed, batch=40, timeout=30)
    assert counts["inputs"] >= 600, counts
    shown = [{k: f[k] for k in ("who", "mode", "rc", "hang", "killed", "internal", "stray",
                                "leftovers", "traceback")} | {"lines": f["lines"][-5:]}
             for f in findings[:3]]
    assert not findings, (counts, shown)


def test_the_generator_covers_the_registry():
    """Every visible command comes up, and the odd bytes the issue names are there."""
    import gen
    import nsshell.commands  # noqa: F401
    from nsshell.registry import REGISTRY
    lines = gen.generate(3000, 1)
    starts = {" ".join(line.split()[:2]) for line in lines} | {line.split(" ")[0] for line in lines}
    missing = [c.name for c in REGISTRY.visible() if c.name not in starts and c.name != "fg"]
    assert not missing, missing
    joined = "".join(lines)
    for needle in ("\x00", "\x1b", "\n", "é", "'", '"', "pid:", "net:[", "/proc/", "nan"):
        assert needle in joined, needle
