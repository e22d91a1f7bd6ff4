"""Built-in commands, grouped by subject.  Importing this package registers them."""

from . import context, handles, inspect, persist, plugins_cmd, run, shell, top  # noqa: F401
