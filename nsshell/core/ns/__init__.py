"""Namespaces held by the shell: handles, creation, id maps, uts, sockets opened inside."""
