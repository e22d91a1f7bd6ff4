#!/usr/bin/env nsshell
# A container built by hand, as an unprivileged user (no root, no setuid helper):
#
#   sh scripts/build-rootfs.sh              # a busybox root filesystem in build/rootfs
#   nsshell examples/container.nss build/rootfs
#
# $1 is the root filesystem (read-only here: the container writes to a tmpfs layered
# over it).  It must not lie under /mnt, where the scratch tmpfs goes.  The host is
# left as it was: every mount below happens in the new, private mount namespace.

# New namespaces, owned by a new user namespace in which we are root.
new user+mnt+pid+uts+ipc+net as box
map root

# A writable layer on a tmpfs, an overlay root over the read-only rootfs.
mount tmpfs /mnt 64m
run mkdir /mnt/upper /mnt/work /mnt/root
mount overlay "$1" /mnt/upper /mnt/work /mnt/root

# proc of the new PID namespace, mounted while the host's proc is still visible
# (in a user namespace the kernel refuses it after the old root is gone).
mount proc /mnt/root/proc

# The overlay becomes / ; the old root is detached.
mount root /mnt/root
hostname box

# ps sees only the container's processes; hostname is the container's own.
# (`sh /bin/sh` here instead gives an interactive shell in the container.)
run sh -c 'ps; hostname'
