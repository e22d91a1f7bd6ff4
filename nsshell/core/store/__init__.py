"""Keeping namespaces past the shell: the bind-mount store, its file system, the holder, the keeper."""

# Here, not in persist.py/storefs.py, so that the shell knows them at start-up without
# importing the store (the CLI's default root, the persisted-name resolver's help).
DEFAULT_ROOT = "/run/nsshell"      # the root when neither --persist-root nor ENV_ROOT says
ENV_ROOT = "NSSHELL_PERSIST_ROOT"
NETNS_DIR = "/run/netns"           # where `ip netns` keeps its names
