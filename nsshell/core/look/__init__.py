"""Looking at namespaces: discovery, per-type state readers, diff, rtnetlink."""

# Names for namespaces beyond the session's (discover.NAME_SOURCES, where it is
# documented): here so that what adds to it at start-up (persisted names, a plugin's
# add_name_source) need not import discover itself.
NAME_SOURCES: list = []
