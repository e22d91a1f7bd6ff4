"""Keeping namespaces past the shell: the bind-mount store, its file system, the holder, the keeper."""
