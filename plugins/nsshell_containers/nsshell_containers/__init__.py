"""nsshell's first-party containers plugin: namespaces named after their containers.

`podman:NAME`, `docker:NAME` and `k8s:NAMESPACE/POD[/CONTAINER]` (pods run by
containerd or CRI-O) are REFs (the namespaces of the container's init process)
and names that `ls`, `tree`, `show` and `identify` print.  Each engine is asked
through its own interface, read-only (engines.py, imported on first use: start-up
pays for nothing); an engine that is absent costs a stat, one that is slow at most
engines.TIMEOUT seconds and one warning line.  It reaches nsshell only through
nsshell.plugin.
"""

SCHEMES = (
    ("podman", "a podman container (the calling user's)"),
    ("docker", "a docker container"),
    ("k8s", "a Kubernetes pod or container: k8s:NAMESPACE/POD[/CONTAINER]"),
)


def _engine(scheme):
    from . import engines
    return engines.BY_SCHEME[scheme]


def _names(session, scan=None):
    from . import engines
    return engines.names(session, scan)   # podman asked now, read when iterated


def register(api):
    for scheme, what in SCHEMES:
        api.add_ref_scheme(scheme,
                           lambda session, rest, s=scheme: _engine(s).resolve(session, rest),
                           lambda session, prefix, s=scheme: _engine(s).complete(session, prefix),
                           what=what)
    api.add_name_source(_names, with_scan=True)
