"""Looking at namespaces: discovery, per-type state readers, diff, rtnetlink."""
