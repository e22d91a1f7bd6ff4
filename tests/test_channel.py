"""The helper channel (core/proc/channel.py), attacked for real over socketpairs.

After each bad frame the decoder must raise one ChannelError subclass and leave no
received fd open (/proc/self/fd is compared before and after)."""

from __future__ import annotations

import array
import json
import os
import pickle
import resource
import socket
import threading

import pytest

from nsshell.core.proc import channel
from nsshell.core.proc.channel import BadFrame, ChannelError, FdsLost, PeerGone


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def some_fds():
    """Three fds to pass (a pipe's ends and /dev/null); closed afterwards."""
    r, w = os.pipe()
    null = os.open("/dev/null", os.O_RDONLY)
    fds = [r, w, null]
    yield fds
    channel.close_all(fds)


def raw_send(sock, data: bytes, fds=()) -> None:
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", list(fds)))] if fds else []
    sent = sock.sendmsg([data], anc)
    if sent < len(data):
        sock.sendall(data[sent:])


def attack(pair, some_fds, data: bytes, exc: type, close: bool = True, **limits):
    """Send DATA (with SOME_FDS attached) as the peer, close it, and receive: EXC is raised
    and nothing received stays open."""
    a, b = pair
    before = open_fds()
    raw_send(a, data, some_fds)
    if close:
        a.close()
    with pytest.raises(exc) as info:
        channel.recv(b, **limits)
    assert isinstance(info.value, ChannelError)
    after = open_fds()
    leaked = after - before
    assert not leaked, f"received fds left open: {leaked}"
    return info.value


def test_channel_round_trip_json_and_pickle(pair, some_fds):
    a, b = pair
    channel.send(a, {"op": "x", "n": [1, 2]}, some_fds)
    obj, fds = channel.recv(b, maxfds=3)
    try:
        assert obj == {"op": "x", "n": [1, 2]}
        assert len(fds) == 3
        assert [os.fstat(f).st_ino for f in fds] == [os.fstat(f).st_ino for f in some_fds]
        assert all(os.get_inheritable(f) is False for f in fds)  # MSG_CMSG_CLOEXEC
    finally:
        channel.close_all(fds)
    err = KeyError("k")
    channel.send(a, ("err", err), pickle=True)
    (kind, value), fds = channel.recv(b, pickle=True)
    assert kind == "err" and isinstance(value, KeyError) and fds == []


def test_channel_frames_back_to_back_stay_apart(pair, some_fds):
    a, b = pair
    channel.send(a, 1, some_fds[:1])
    channel.send(a, 2, some_fds[1:])
    one, fds1 = channel.recv(b, maxfds=3)
    two, fds2 = channel.recv(b, maxfds=3)
    channel.close_all(fds1 + fds2)
    assert (one, len(fds1), two, len(fds2)) == (1, 1, 2, 2)


def test_channel_large_frame_with_fds(pair, some_fds):
    """Larger than the socket buffer: several writes, fds on the first, all arrive."""
    a, b = pair
    big = {"blob": "x" * (4 << 20)}
    t = threading.Thread(target=channel.send, args=(a, big, some_fds))
    t.start()
    obj, fds = channel.recv(b, maxfds=3, maxsize=8 << 20)
    t.join()
    channel.close_all(fds)
    assert obj == big and len(fds) == 3


def test_channel_truncated_frame_with_fds(pair, some_fds):
    body = json.dumps({"op": "cut"}).encode()
    e = attack(pair, some_fds, channel.header(100, 3) + body, PeerGone, maxfds=3)
    assert isinstance(e, EOFError)  # the callers' old "peer gone" type still matches


def test_channel_peer_closes_mid_header(pair, some_fds):
    attack(pair, some_fds, channel.header(10, 3)[:3], PeerGone, maxfds=3)


def test_channel_peer_gone_before_anything(pair):
    a, b = pair
    a.close()
    with pytest.raises(PeerGone):
        channel.recv(b)


def test_channel_more_fds_than_allowed_ctrunc(pair, some_fds):
    """The buffer holds one fd, three come: the kernel drops two (MSG_CTRUNC), the one it
    installed is closed."""
    attack(pair, some_fds, channel.header(2, 3) + b"{}", FdsLost, maxfds=1)


def test_channel_no_fds_allowed(pair, some_fds):
    attack(pair, some_fds, channel.header(2, 3) + b"{}", FdsLost, maxfds=0)


def test_channel_header_says_more_fds_than_allowed(pair, some_fds):
    # Room for 3 in the buffer, but the header claims 200: refused before anything else.
    attack(pair, some_fds, channel.header(2, 200) + b"{}", FdsLost, maxfds=3)


def test_channel_fd_count_mismatch(pair, some_fds):
    attack(pair, some_fds, channel.header(2, 1) + b"{}", BadFrame, maxfds=8)


def test_channel_huge_payload_claimed(pair, some_fds):
    e = attack(pair, some_fds, channel.header(0xFFFFFFFF, 3) + b"{}", BadFrame, close=False,
               maxfds=3, maxsize=1 << 20)
    assert "at most" in str(e)


def test_channel_garbage_payload(pair, some_fds):
    junk = b"\xff\xfe{not json"
    attack(pair, some_fds, channel.header(len(junk), 3) + junk, BadFrame, maxfds=3)


def test_channel_garbage_pickle(pair, some_fds):
    junk = b"\x80\x05garbage"
    attack(pair, some_fds, channel.header(len(junk), 3, channel.PICKLE) + junk, BadFrame,
           maxfds=3, pickle=True)


def test_channel_bad_magic(pair, some_fds):
    attack(pair, some_fds, b"XX" + channel.header(2, 3)[2:] + b"{}", BadFrame, maxfds=3)


def test_channel_pickle_refused_unless_asked(pair, some_fds):
    """A JSON receiver (the keeper) never unpickles, whatever the frame says."""
    body = pickle.dumps({"a": 1})
    e = attack(pair, some_fds, channel.header(len(body), 3, channel.PICKLE) + body, BadFrame,
               maxfds=3)
    assert "pickle" in str(e)


def test_channel_fds_smuggled_mid_payload_never_installed(pair, some_fds):
    """Fds attached to a later write of the frame are not the frame's: the kernel releases
    them (the payload is read without control data)."""
    a, b = pair
    before = open_fds()
    body = json.dumps({"ok": True}).encode()
    raw_send(a, channel.header(len(body), 0) + body[:3])
    raw_send(a, body[3:], some_fds)
    obj, fds = channel.recv(b, maxfds=3)
    assert obj == {"ok": True} and fds == []
    assert open_fds() == before


def test_channel_out_of_fds_is_fds_lost(some_fds):
    """A receiver with no fd numbers left: the kernel drops the fds (MSG_CTRUNC): FdsLost,
    in a child whose limit is lowered (not to disturb the test process)."""
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            a.close()
            highest = max(int(n) for n in os.listdir("/proc/self/fd"))
            resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, resource.getrlimit(
                resource.RLIMIT_NOFILE)[1]))
            for fd in range(3, highest + 1):  # leave exactly one free number below the limit
                if fd != b.fileno():
                    try:
                        os.fstat(fd)
                    except OSError:
                        os.dup2(b.fileno(), fd)
            os.close(highest) if highest != b.fileno() else None
            before = set(os.listdir("/proc/self/fd"))
            try:
                channel.recv(b, maxfds=3)
            except FdsLost:
                code = 0 if set(os.listdir("/proc/self/fd")) == before else 3
            except BaseException:
                code = 2
        finally:
            os._exit(code)
    b.close()
    channel.send(a, {"x": 1}, some_fds)
    _, status = os.waitpid(pid, 0)
    a.close()
    assert os.waitstatus_to_exitcode(status) == 0


def test_channel_send_refuses_too_many_fds(pair):
    a, _ = pair
    with pytest.raises(ValueError):
        channel.send(a, None, [0] * (channel.SCM_MAX_FD + 1))


@pytest.mark.parametrize("cut", ["header", "payload", "garbage"])
def test_channel_spawn_helper_cut_short_leaks_nothing(some_fds, cut):
    """spawn's own reader (Pending.result): a helper that dies mid-answer with fds attached
    is a HelperCrash, and none of its fds stays open in the shell (the defect of the old
    spawn._recv)."""
    from nsshell.core.proc import spawn
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    body = pickle.dumps(("ok", 1)) if cut != "garbage" else b"\x80\x05junk"
    frame = channel.header(len(body), 3, channel.PICKLE) + body
    frame = {"header": frame[:5], "payload": frame[:-3], "garbage": frame}[cut]
    pid = os.fork()
    if pid == 0:
        try:
            parent.close()
            raw_send(child, frame, some_fds)
        finally:
            os._exit(0)
    child.close()
    before = open_fds()
    with pytest.raises(spawn.HelperCrash):
        spawn.Pending(pid, parent).result()
    assert not (open_fds() - before)


def test_channel_and_keeperd_start_light():
    """channel.py is stdlib only, and the keeper daemon loads nothing else of nsshell at
    start but the syscall layer and the name rule (it must not depend on the shell's heavy parts)."""
    import subprocess
    import sys
    code = ("import sys, nsshell.core.store.keeperd; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('nsshell'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["nsshell", "nsshell.core", "nsshell.core.proc", "nsshell.core.proc.channel",
                   "nsshell.core.store", "nsshell.core.store.keeperd", "nsshell.kernel",
                   "nsshell.kernel.nstypes", "nsshell.kernel.procfs", "nsshell.kernel.syscalls",
                   "nsshell.names", "nsshell.version"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the socket opener serves root")
def test_channel_socket_opener_both_ends():
    """The opener (core/ns/nssocket.py) over the channel, for real: a socket made in a
    network namespace comes back; a file that is no namespace is an OSError and the opener
    serves on; a frame it cannot read ends it (no fd left open on either side)."""
    from nsshell.core.ns import nssocket
    before = open_fds()
    opener = nssocket._Opener()
    home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = opener.open(home, socket.AF_UNIX, socket.SOCK_DGRAM, 0)
        with socket.socket(fileno=fd) as made:
            assert made.type == socket.SOCK_DGRAM
        with pytest.raises(OSError):
            opener.open(null, socket.AF_UNIX, socket.SOCK_DGRAM, 0)   # setns: EINVAL
        fd2 = opener.open(home, socket.AF_UNIX, socket.SOCK_STREAM, 0)  # it serves on
        os.close(fd2)
        # A request without its fd: EINVAL, and it serves on; then a pickled frame (refused
        # unread): EINVAL, and it ends, its socket closed (with our bytes unread: a reset).
        raw_send(opener.sock, channel.header(2, 0) + b"[]")
        reply, fds = channel.recv(opener.sock, maxfds=1)
        assert reply == {"errno": 22} and fds == []
        body = pickle.dumps([1, 1, 0])
        raw_send(opener.sock, channel.header(len(body), 1, channel.PICKLE) + body, [home])
        reply, fds = channel.recv(opener.sock, maxfds=1)
        assert reply == {"errno": 22} and fds == []
        with pytest.raises((PeerGone, ConnectionResetError)):
            channel.recv(opener.sock, maxfds=1)
    finally:
        opener.close()
        os.close(home)
        os.close(null)
    leaked = open_fds() - before
    assert not leaked, leaked
