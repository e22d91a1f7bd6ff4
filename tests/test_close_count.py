"""`close` says how many of the handles it dropped are still held elsewhere in the
session: never a negative count, and only handles that really stay open."""

from __future__ import annotations

import os

import pytest


def _held(shell, name: str) -> dict:
    return dict(shell.session.sets[name].handles)


@pytest.mark.parametrize("types", ["net", "net+uts", "user+mnt+uts+ipc"])
def test_close_a_set_held_nowhere_else_says_nothing_more(shell, types):
    """`new TYPES as x --no-join; close x` (the lab script's -1): every handle closed."""
    assert shell(f"new {types} as dnc1 --no-join").rc == 0
    handles = _held(shell, "dnc1")
    d = shell("close dnc1")
    assert d.rc == 0, d
    assert d.out.strip() == "closed dnc1", d
    assert all(h.closed for h in handles.values())


def test_close_one_type_of_a_multi_type_set(shell):
    assert shell("new net+uts+ipc as dnc2 --no-join").rc == 0
    handles = _held(shell, "dnc2")
    d = shell("close net dnc2")
    assert d.out.strip() == "closed net of dnc2", d
    assert handles["net"].closed and not handles["uts"].closed
    d = shell("close uts+ipc dnc2")
    assert d.out.strip() == "closed dnc2", d        # the set is gone with its last types
    assert handles["uts"].closed and handles["ipc"].closed
    assert "dnc2" not in shell.session.sets


def test_close_counts_the_handles_held_under_another_name(shell):
    assert shell("new net+uts as dnc3 --no-join").rc == 0
    assert shell("name net dnc3 dnc3n").rc == 0     # dnc3's net, held twice
    net = _held(shell, "dnc3")["net"]
    d = shell("close dnc3")
    assert d.out.strip() == "closed dnc3 (1 still held elsewhere in the session)", d
    assert not net.closed and os.fstat(net.fd).st_ino == net.nsid.ino
    d = shell("close dnc3n")
    assert d.out.strip() == "closed dnc3n", d
    assert net.closed


def test_close_of_a_type_held_under_another_name(shell):
    assert shell("new net+uts as dnc4 --no-join").rc == 0
    assert shell("name uts dnc4 dnc4u").rc == 0
    d = shell("close net+uts dnc4")
    assert d.out.strip() == "closed dnc4 (1 still held elsewhere in the session)", d
    assert shell("close dnc4u").out.strip() == "closed dnc4u"


def test_close_in_a_batch_prints_no_negative_count(nsshell):
    d = nsshell("-c", "new net as dnc5 --no-join; close dnc5; new net+uts as dnc6 --no-join; "
                      "close net dnc6; close dnc6")
    assert d.rc == 0, d
    assert d.out.splitlines()[1] == "closed dnc5", d
    assert "closed net of dnc6" in d.out and "still held" not in d.out, d
