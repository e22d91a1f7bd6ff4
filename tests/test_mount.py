"""The mount plugin on the real kernel: every command, as root and as uid 65534, with the
host's mount table the same afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from busybox_rootfs import host_mounts, rootfs  # noqa: F401 - rootfs is a fixture


# -- the host's mount table ----------------------------------------------------------------

@pytest.fixture
def host_unchanged():
    """Asserts at the end of the test that the host's mount table is as it was."""
    before = host_mounts()
    yield
    after = host_mounts()
    assert after == before, ("the host's mount table changed:\n"
                             + "".join(f"- {l}" for l in before if l not in after)
                             + "".join(f"+ {l}" for l in after if l not in before))


@pytest.fixture
def tmpdir_open(open_tmpdir):
    return open_tmpdir


def mkdirs(base: str, *names: str, owner: int | None = None) -> list[str]:
    out = []
    for n in names:
        p = os.path.join(base, n)
        os.makedirs(p, exist_ok=True)
        if owner is not None:
            os.chown(p, owner, owner)
        out.append(p)
    return out


def json_tail(out: str):
    """The JSON document at the end of OUT (after the messages of earlier commands)."""
    start = out.index("\n{") + 1 if not out.startswith("{") else 0
    return json.loads(out[start:])


def mounts_at(out: str, target: str) -> list[dict]:
    return [m for m in json_tail(out)["mounts"] if m["target"] == target]


# -- the guard: the host's own mount namespace -------------------------------------------

@pytest.mark.parametrize("cmd", [
    "mount tmpfs {d}", "mount bind /etc {d}", "mount proc {d}",
    "mount overlay /etc {d} {d} {d}", "mount propagation private {d}",
    "mount umount {d}", "mount root {d}",
])
def test_every_change_is_refused_in_the_hosts_mount_namespace(nsshell, host_unchanged,
                                                              tmpdir_open, cmd):
    d = nsshell("-c", cmd.format(d=tmpdir_open))
    assert d.rc == 1, d
    assert "is the host's own mnt namespace" in d.err and "--host" in d.err, d
    # one line, no traceback (a warning about another plugin mid-change is not ours)
    assert len([l for l in d.err.splitlines() if not l.startswith("nsshell: plugin ")]) == 1, d


def test_ls_reads_the_hosts_table_without_a_namespace(nsshell):
    d = nsshell("-c", "mount ls --json")
    assert d.rc == 0, d
    targets = [m["target"] for m in json_tail(d.out)["mounts"]]
    with open("/proc/self/mountinfo") as f:
        host_targets = [line.split()[4] for line in f]
    assert "/" in targets and "/proc" in targets
    assert set(targets) <= set(host_targets) | {t for t in targets if t.startswith("/run/")}


def test_host_flag_mounts_and_unmounts_on_the_host(nsshell, host_unchanged, tmpdir_open):
    target = os.path.join(tmpdir_open, "t")
    os.mkdir(target)
    d = nsshell("-c", f"mount tmpfs --host {target} 1m; "
                      f"run sh -c 'grep -c \" {target} \" /proc/self/mountinfo'; "
                      f"mount umount --host {target}")
    assert d.rc == 0, d
    assert d.out.strip() == "1"


# -- each command, as root, in a new mount namespace ----------------------------------------

def test_tmpfs_with_a_size_is_seen_inside_only(nsshell, host_unchanged, tmpdir_open):
    target = tmpdir_open
    d = nsshell("-c", f"new mnt; mount tmpfs {target} 2m; run touch {target}/inside; "
                      f"run ls {target}; mount ls --json")
    assert d.rc == 0, d
    assert "inside" in d.out
    found = mounts_at(d.out, target)
    assert len(found) == 1 and found[0]["fstype"] == "tmpfs", found
    assert "size=2048k" in found[0]["super_options"]
    assert found[0]["propagation"] == "private"
    assert os.listdir(target) == []  # the file went to the namespace's tmpfs


def test_tmpfs_refuses_a_bad_size_and_a_missing_dir(nsshell, host_unchanged, tmpdir_open):
    d = nsshell("-c", f"new mnt; mount tmpfs {tmpdir_open} 12q")
    assert d.rc == 2 and "SIZE '12q'" in d.err, d
    d = nsshell("-c", f"new mnt; mount tmpfs {tmpdir_open}/nonexistent")
    assert d.rc == 1 and "No such file or directory" in d.err and "hint:" in d.err, d


def test_bind_read_only_and_read_write(nsshell, host_unchanged, tmpdir_open):
    src, ro, rw = mkdirs(tmpdir_open, "src", "ro", "rw")
    with open(os.path.join(src, "file"), "w") as f:
        f.write("hello\n")
    d = nsshell("-c", f"new mnt; mount bind {src} {ro} ro; mount bind {src} {rw}; "
                      f"run cat {ro}/file; run sh -c 'echo written > {rw}/new'; "
                      "set errexit off; "
                      f"run touch {ro}/refused; mount ls --json")
    assert d.rc != 0  # the touch on the read-only mount failed ...
    assert "Read-only file system" in d.err, d
    assert d.out.splitlines()[1] == "hello"
    ro_mount, = mounts_at(d.out, ro)
    rw_mount, = mounts_at(d.out, rw)
    assert ro_mount["options"].startswith("ro"), ro_mount
    assert rw_mount["options"].startswith("rw"), rw_mount
    assert ro_mount["dev"] == rw_mount["dev"]  # the same filesystem, shown twice
    # ... the write through the rw bind reached the source; nothing was mounted on the host
    assert open(os.path.join(src, "new")).read() == "written\n"
    assert not os.path.exists(os.path.join(src, "refused"))
    assert os.listdir(ro) == [] and os.listdir(rw) == []


def test_bind_of_a_file_onto_a_directory_is_a_clear_error(nsshell, host_unchanged, tmpdir_open):
    d = nsshell("-c", f"new mnt; mount bind /etc/hostname {tmpdir_open}")
    assert d.rc == 1, d
    assert "bind-mounting /etc/hostname" in d.err and "hint:" in d.err, d


def test_proc_shows_the_contexts_pid_namespace(nsshell, host_unchanged, tmpdir_open):
    d = nsshell("-c", f"new mnt+pid; mount proc {tmpdir_open}; run cat {tmpdir_open}/1/comm; "
                      f"run ls {tmpdir_open}")
    assert d.rc == 0, d
    lines = d.out.splitlines()
    assert lines[1] == "nsshell-init"
    pids = sorted(int(x) for x in lines[2:] if x.isdigit())
    assert pids[0] == 1 and len(pids) < 10, pids  # the namespace's processes, not the host's


def test_proc_default_is_slash_proc(nsshell, host_unchanged):
    d = nsshell("-c", "new mnt+pid; mount proc; run cat /proc/1/comm")
    assert d.rc == 0, d
    assert d.out.splitlines()[-1] == "nsshell-init"


def test_overlay_writes_to_upper_and_leaves_lower(nsshell, host_unchanged, tmpdir_open):
    lower, upper, work, merged = mkdirs(tmpdir_open, "lower", "upper", "work", "merged")
    with open(os.path.join(lower, "a"), "w") as f:
        f.write("from lower\n")
    d = nsshell("-c", f"new mnt; mount overlay {lower} {upper} {work} {merged}; "
                      f"run cat {merged}/a; run sh -c 'echo changed > {merged}/a; "
                      f"echo new > {merged}/b'; mount ls --json")
    assert d.rc == 0, d
    assert d.out.splitlines()[1] == "from lower"
    m, = mounts_at(d.out, merged)
    assert m["fstype"] == "overlay" and f"lowerdir={lower}" in m["super_options"]
    assert open(os.path.join(lower, "a")).read() == "from lower\n"
    assert open(os.path.join(upper, "a")).read() == "changed\n"
    assert open(os.path.join(upper, "b")).read() == "new\n"
    assert not os.path.exists(os.path.join(lower, "b"))
    assert os.listdir(merged) == []


def test_overlay_with_two_lower_layers(nsshell, host_unchanged, tmpdir_open):
    top, bottom, upper, work, merged = mkdirs(tmpdir_open, "top", "bottom", "u", "w", "m")
    for d_, name, text in ((top, "x", "top"), (bottom, "x", "bottom"), (bottom, "y", "bottom")):
        with open(os.path.join(d_, name), "w") as f:
            f.write(text)
    d = nsshell("-c", f"new mnt; mount overlay {top}:{bottom} {upper} {work} {merged}; "
                      f"run cat {merged}/x {merged}/y")
    assert d.rc == 0, d
    assert d.out.splitlines()[-1] == "topbottom"


def test_overlay_error_names_what_was_asked(nsshell, host_unchanged, tmpdir_open):
    lower, merged = mkdirs(tmpdir_open, "lower", "merged")
    d = nsshell("-c", f"new mnt; mount overlay {lower} {lower}/missing {lower} {merged}")
    assert d.rc == 1, d
    assert "missing: No such file or directory" in d.err, d


def test_propagation_changes_and_recursion(nsshell, host_unchanged, tmpdir_open):
    a, b = os.path.join(tmpdir_open, "a"), os.path.join(tmpdir_open, "b")
    d = nsshell("-c", f"new mnt; mount tmpfs {tmpdir_open}; run mkdir {a} {b}; "
                      f"mount tmpfs {a}; mount propagation shared {tmpdir_open} -r; "
                      # a bind of a shared mount is its peer; a slave peer gets a master
                      f"mount bind {a} {b}; "
                      f"mount ls --json; mount propagation slave {b}; mount ls --json; "
                      f"mount propagation private {tmpdir_open} -r; mount ls --json")
    assert d.rc == 0, d
    docs, rest = [], d.out[d.out.index("\n{") + 1:]
    decoder = json.JSONDecoder()
    while rest.strip():
        doc, end = decoder.raw_decode(rest.lstrip())
        docs.append({m["target"]: m["propagation"] for m in doc["mounts"]})
        rest = rest.lstrip()[end:]
    shared, slaved, private = docs
    assert shared[tmpdir_open].startswith("shared:") and shared[a].startswith("shared:")
    assert shared[b] == shared[a]  # peers
    assert slaved[b] == "master:" + shared[a].split(":")[1] and slaved[a] == shared[a]
    assert private[tmpdir_open] == "private" and private[a] == "private"
    assert private[b] == "private"
    assert shared["/"] == "private"  # only what was asked for changed


def test_propagation_of_a_non_mount_point_says_how(nsshell, host_unchanged, tmpdir_open):
    d = nsshell("-c", f"new mnt; mount propagation private {tmpdir_open}")
    assert d.rc == 1, d
    assert "must be a mount point" in d.err, d


def test_umount_and_umount_of_a_non_mount_point(nsshell, host_unchanged, tmpdir_open):
    d = nsshell("-c", f"new mnt; mount tmpfs {tmpdir_open}; mount umount {tmpdir_open}; "
                      f"mount ls --json")
    assert d.rc == 0, d
    assert mounts_at(d.out, tmpdir_open) == []
    d = nsshell("-c", f"new mnt; mount umount {tmpdir_open}")
    assert d.rc == 1 and "not a mount point" in d.err, d


def test_umount_busy_then_lazy(nsshell, host_unchanged, tmpdir_open):
    sub = os.path.join(tmpdir_open, "sub")
    d = nsshell("-c", f"new mnt; mount tmpfs {tmpdir_open}; run mkdir {sub}; "
                      f"mount tmpfs {sub}; set errexit off; mount umount {tmpdir_open}; "
                      f"mount umount -l {tmpdir_open}; mount ls --json")
    assert "it is in use" in d.err or "something is mounted below it" in d.err, d
    assert mounts_at(d.out, tmpdir_open) == [] and mounts_at(d.out, sub) == []


def test_root_pivots_into_a_directory_and_detaches_the_old_root(nsshell, host_unchanged,
                                                                 rootfs):
    d = nsshell("-c", f"new mnt; mount root {rootfs}; run /bin/busybox ls /; mount ls --json")
    assert d.rc == 0, d
    listing = d.out.split("\n{")[0].splitlines()[1:]
    assert sorted(listing) == sorted(e for e in os.listdir(rootfs) if not e.startswith("."))
    targets = [m["target"] for m in json_tail(d.out)["mounts"]]
    assert targets == ["/"], targets  # the old root and everything under it is gone
    assert mounts_at(d.out, "/")[0]["root"] == rootfs  # bound onto itself from the host tree


def test_root_interrupted_before_the_detach_is_finished_by_the_next(nsshell, host_unchanged,
                                                                    rootfs):
    """A `mount root` killed between pivot_root and the detach (here: a program that does
    only the pivot_root half, as a killed helper would leave it) leaves the host's tree
    stacked over the new root; the next `mount root` finishes it rather than pivoting
    into DIR as resolved in that stacked host tree."""
    d = nsshell("-c", f"new mnt; mount bind {rootfs} {rootfs}; "
                      f"run sh -c 'cd {rootfs} && pivot_root . .'; "
                      "run /bin/ls -d /etc/hostname; "          # the host tree is on top
                      f"mount root {rootfs}; "
                      "run /bin/busybox ls /; mount ls --json")
    assert d.rc == 0, d
    assert "finished an interrupted `mount root`" in d.out, d
    listing = d.out.split("\n{")[0].splitlines()
    entries = listing[listing.index(next(l for l in listing if "finished" in l)) + 1:]
    assert sorted(entries) == sorted(e for e in os.listdir(rootfs) if not e.startswith("."))
    targets = [m["target"] for m in json_tail(d.out)["mounts"]]
    assert targets == ["/"], targets


def test_root_with_nothing_interrupted_pivots_as_asked(nsshell, host_unchanged, rootfs):
    """A mount stacked nowhere: the check finds nothing to finish (a fresh namespace,
    and one already pivoted)."""
    d = nsshell("-c", f"new mnt; mount root {rootfs}; mount root /; run /bin/busybox ls /")
    assert "finished" not in d.out and "already the root" in d.err, d


def test_root_refuses_a_file_and_the_root(nsshell, host_unchanged):
    d = nsshell("-c", "new mnt; mount root /etc/hostname")
    assert d.rc == 2 and "not a directory" in d.err, d
    d = nsshell("-c", "new mnt; mount root /")
    assert d.rc == 2 and "already the root" in d.err, d


def test_a_mount_that_would_propagate_to_the_host_is_refused(nsshell, host_unchanged,
                                                             tmpdir_open):
    """A namespace created with --propagation unchanged shares peer groups with the host:
    mounting there would change the host's table, so the plugin refuses."""
    shared_dir, = mkdirs(tmpdir_open, "shared")
    sub, = mkdirs(shared_dir, "sub")
    subprocess.run(["mount", "--bind", shared_dir, shared_dir], check=True)
    try:
        subprocess.run(["mount", "--make-shared", shared_dir], check=True)
        before = host_mounts()
        d = nsshell("-c", f"new mnt --propagation unchanged; mount tmpfs {sub}")
        assert d.rc == 1, d
        assert "shared with the host's mount namespace" in d.err, d
        assert "mount propagation private" in d.err
        assert host_mounts() == before
        d = nsshell("-c", f"new mnt --propagation unchanged; mount root {sub}")
        assert d.rc == 1 and "shared with the host's mount namespace" in d.err, d
        assert host_mounts() == before
        # After making it private in the namespace, the same mount is allowed (and stays there).
        d = nsshell("-c", f"new mnt --propagation unchanged; "
                          f"mount propagation private {shared_dir}; mount tmpfs {sub}; "
                          f"run grep -c ' {sub} ' /proc/self/mountinfo")
        assert d.rc == 0, d
        assert d.out.splitlines()[-1] == "1"
        assert host_mounts() == before
    finally:
        subprocess.run(["umount", shared_dir], check=True)


def test_usage_errors(nsshell):
    for cmd, words in (("mount tmpfs", "missing DIR"), ("mount bind /a", "missing DST"),
                       ("mount bind /a /b rx", "not one of"),
                       ("mount overlay /a /b /c", "missing DIR"),
                       ("mount propagation private", "missing PATH"),
                       ("mount propagation bogus /", "not one of"),
                       ("mount umount /a /b", "unexpected argument"),
                       ("mount root", "missing DIR"), ("mount ls extra", "unexpected")):
        d = nsshell("-c", cmd)
        assert d.rc == 2 and words in d.err, (cmd, d)


def test_help_lists_the_plugin_commands(nsshell):
    d = nsshell("-c", "plugins --json")
    assert d.rc == 0, d
    d = nsshell("-c", "help mount overlay")
    assert d.rc == 0 and "mount overlay LOWER UPPER WORK DIR" in d.out, d


# -- rootless: uid 65534 in its own user namespace ------------------------------------------

def test_rootless_every_command(rootless, host_unchanged, tmpdir_open):
    t, lower, data = mkdirs(tmpdir_open, "t", "lower", "data")
    with open(os.path.join(lower, "a"), "w") as f:
        f.write("lower\n")
    with open(os.path.join(data, "f"), "w") as f:
        f.write("data\n")
    os.chmod(os.path.join(data, "f"), 0o644)
    script = "\n".join([
        "new user+mnt+pid",
        "map root",
        f"mount tmpfs {t} 4m",
        f"run mkdir {t}/upper {t}/work {t}/merged {t}/ro {t}/proc",
        f"mount overlay {lower} {t}/upper {t}/work {t}/merged",
        f"run sh -c 'echo up > {t}/merged/b; cat {t}/merged/a'",
        f"mount bind {data} {t}/ro ro",
        f"run cat {t}/ro/f",
        f"mount proc {t}/proc",
        f"run cat {t}/proc/1/comm",
        f"mount propagation shared {t}",
        f"mount propagation private {t} -r",
        f"mount umount {t}/ro",
        "mount ls --json",
    ])
    d = rootless("-c", script)
    assert d.rc == 0, d
    lines = d.out.splitlines()
    assert lines[2:5] == ["lower", "data", "nsshell-init"], lines
    targets = {m["target"]: m for m in json_tail(d.out)["mounts"]}
    assert targets[t]["fstype"] == "tmpfs" and targets[t]["propagation"] == "private"
    assert targets[f"{t}/merged"]["fstype"] == "overlay"
    assert targets[f"{t}/proc"]["fstype"] == "proc"
    assert f"{t}/ro" not in targets
    assert os.listdir(t) == [] and not os.path.exists(os.path.join(lower, "b"))


def test_rootless_proc_after_root_is_refused_with_the_reason(rootless, host_unchanged, rootfs):
    d = rootless("-c", f"new user+mnt+pid; map root; mount tmpfs /mnt; "
                       f"run mkdir /mnt/u /mnt/w /mnt/r; mount overlay {rootfs} /mnt/u /mnt/w /mnt/r; "
                       "mount root /mnt/r; mount proc")
    assert d.rc == 1, d
    assert "mounting proc on /proc: Operation not permitted" in d.err, d
    assert "before `mount root`" in d.err


def test_rootless_on_the_host_is_refused(rootless, host_unchanged, tmpdir_open):
    d = rootless("-c", f"mount tmpfs {tmpdir_open}")
    assert d.rc == 1 and "host's own" in d.err, d
    d = rootless("-c", f"mount tmpfs --host {tmpdir_open}")
    assert d.rc == 1 and "Operation not permitted" in d.err, d


def test_rootless_mnt_owned_by_a_user_namespace_left_out_of_the_context(rootless,
                                                                         host_unchanged,
                                                                         tmpdir_open):
    """`leave user` keeps the mount namespace current: the helper still enters the user
    namespace that owns it, for the capabilities."""
    d = rootless("-c", f"new user+mnt; map root; leave user; mount tmpfs {tmpdir_open}; "
                       "mount ls --json")
    assert d.rc == 0, d
    assert mounts_at(d.out, tmpdir_open)[0]["fstype"] == "tmpfs"


def test_relative_paths_are_taken_from_the_shells_directory(nsshell, host_unchanged,
                                                             tmpdir_open):
    sub, = mkdirs(tmpdir_open, "sub")
    d = nsshell("-c", "new mnt; mount tmpfs sub 1m; mount ls --json", cwd=tmpdir_open)
    assert d.rc == 0, d
    assert mounts_at(d.out, sub)[0]["fstype"] == "tmpfs"
