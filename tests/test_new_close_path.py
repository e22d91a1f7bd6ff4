"""The path of a run of `new ... --no-join` and `close` lines (bench case `new`) imports
no more than it needs: the creator's channel is a bare _socket pair, so the socket
module (its enums and selectors, ~4 ms) stays out of such a batch."""

from __future__ import annotations

from test_imports import imported


def test_new_and_close_lines_import_no_socket_module():
    script = "; ".join([f"new net as dnp{i} --no-join" for i in range(4)]
                       + [f"close dnp{i}" for i in range(4)])
    mods = imported("-c", script)
    assert "nsshell.core.ns.creator" in mods      # the creator served them
    assert "socket" not in mods and "selectors" not in mods
