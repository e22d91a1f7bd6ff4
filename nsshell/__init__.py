"""nsshell: an interactive shell and scripting language for Linux namespaces."""

__version__ = "0.1.0"
