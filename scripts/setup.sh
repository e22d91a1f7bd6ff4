#!/bin/sh
# Set up everything nsshell and its tests need, on a fresh Debian machine with Python.
# Idempotent: a second run only checks.  Installs Debian packages when run as root
# and something is missing, then a virtual environment in .venv with nsshell, its
# first-party plugins and the test tools.
set -eu
cd "$(dirname "$0")/.."

need=""
for pair in newuidmap:uidmap busybox:busybox-static ip:iproute2 lsns:util-linux \
            ping:iputils-ping ps:procps groff:groff-base man:man-db zsh:zsh fish:fish \
            strace:strace podman:podman runc:runc dot:graphviz dockerd:docker.io; do
    cmd=${pair%%:*}; pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/sbin/$cmd" ] || [ -x "/usr/sbin/$cmd" ] || need="$need $pkg"
done
python3 -c 'import venv, ensurepip' 2>/dev/null || need="$need python3-venv"
if [ -n "$need" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing$need" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        # No service starts on install (docker.io would start a system dockerd, with a
        # bridge and iptables rules): the tests start a private dockerd of their own.
        norc=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
            norc=1
        fi
        status=0
        apt-get install -y -qq $need >/dev/null || status=$?
        if [ -n "$norc" ]; then rm -f /usr/sbin/policy-rc.d; fi
        [ "$status" = 0 ] || exit "$status"
    else
        echo "setup: missing Debian packages:$need (install them as root)" >&2
    fi
fi

# The system Python, when there is one: an unprivileged uid must be able to run the
# venv's interpreter (rootless tests), and a Python under /root is not reachable.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.nsshell-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || \
   [ -n "$(find plugins -name pyproject.toml -newer "$stamp" 2>/dev/null)" ]; then
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e '.[test]' $(for p in plugins/*/pyproject.toml; do [ -f "$p" ] && printf -- '-e %s ' "$(dirname "$p")"; done)
    touch "$stamp"
fi
