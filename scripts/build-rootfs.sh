#!/bin/sh
# Build a small root filesystem for the container example (examples/container.nss):
# Debian's statically linked busybox (package busybox-static) as /bin/busybox, one
# symlink per applet in /bin, the empty directories a container mounts on
# (/proc /sys /dev /tmp ...), and a minimal /etc (passwd, group, hostname).
#
#   sh scripts/build-rootfs.sh [--owner UID[:GID]] [DIR]     default DIR: build/rootfs
#
# Nothing else is copied from the host.  The result is readable by everyone, so an
# unprivileged user can use it as the lower layer of an overlay.  Its files belong to
# whoever builds it; in a rootless container (`map root`) only the files of the user
# who runs it are root's, so build it as that user, or as root with --owner UID.
# Run it again to rebuild: DIR is replaced (only when it looks like a rootfs this
# script built).
set -eu

owner=""
if [ "${1:-}" = "--owner" ]; then
    [ $# -ge 2 ] || { echo "build-rootfs: --owner needs UID[:GID]" >&2; exit 2; }
    owner=$2
    shift 2
    case $owner in *:*) ;; *) owner="$owner:$owner" ;; esac
fi
dest=${1:-"$(dirname "$0")/../build/rootfs"}

busybox=""
for b in /bin/busybox /usr/bin/busybox; do
    [ -x "$b" ] && { busybox=$b; break; }
done
if [ -z "$busybox" ]; then
    echo "build-rootfs: busybox is not installed (apt-get install busybox-static)" >&2
    exit 1
fi
# It must be static: the rootfs holds no libc.
if ! "$busybox" true 2>/dev/null || ldd "$busybox" >/dev/null 2>&1; then
    echo "build-rootfs: $busybox is not a static busybox (apt-get install busybox-static)" >&2
    exit 1
fi

if [ -e "$dest" ]; then
    if [ ! -f "$dest/.nsshell-rootfs" ]; then
        echo "build-rootfs: $dest exists and was not built by this script; refusing to replace it" >&2
        exit 1
    fi
    rm -rf "$dest"
fi

umask 022
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
cd "$dest"
mkdir -p bin sbin usr/bin usr/sbin etc root home proc sys dev tmp run var/tmp mnt
chmod 1777 tmp var/tmp
chmod 700 root

cp "$busybox" bin/busybox
chmod 755 bin/busybox
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] && continue
    [ -e "bin/$applet" ] || ln -s busybox "bin/$applet"
done

cat > etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > etc/group <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo box > etc/hostname
printf 'PATH=/bin:/sbin:/usr/bin:/usr/sbin\nPS1="[box \\w]# "\nexport PATH PS1\n' > etc/profile
: > .nsshell-rootfs
[ -z "$owner" ] || chown -R -h "$owner" .

echo "$dest"
