"""The version of nsshell, in one place (the package, the CLI, the man page and the build read it)."""

__version__ = "0.1.0"
