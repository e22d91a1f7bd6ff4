"""nsshell's first-party containers plugin: namespaces named after their containers.

`podman:NAME`, `docker:NAME` and `k8s:NAMESPACE/POD[/CONTAINER]` (pods run by
containerd or CRI-O) are REFs (the namespaces of the container's init process)
and names that `ls`, `tree`, `show` and `identify` print.  Each engine is asked
through its own interface, read-only (engines.py); an engine that is absent
costs a stat, one that is slow at most TIMEOUT seconds and one warning line.
It reaches nsshell only through nsshell.plugin.
"""


def register(api):
    from . import engines
    for eng in engines.ENGINES:
        api.add_ref_scheme(eng.scheme, eng.resolve, eng.complete, what=eng.what)
    api.add_name_source(engines.names)
