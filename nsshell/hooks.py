"""Hooks: an ordered set of callables that an owner runs at one moment.

A leaf module (it imports nothing of nsshell), so the lowest layer that has a
moment to announce owns its Hooks: core/ns/handle.py runs CLOSE_HOOKS before a
handle's fd closes, session.py runs INIT_HOOKS for every new Session.  Whoever
adds a hook removes it the same way (nsshell/plugin.py records each add, so a
plugin that fails to load is removed whole).
"""

from __future__ import annotations

TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
    from typing import Callable, Iterator



class Hooks:
    """Callables run in the order they were added.

    on_error(hook, exc), when given, takes an exception a hook raised and the next
    hook still runs (a plugin's hook must not keep a handle open); without it the
    exception propagates."""

    def __init__(self, what: str, on_error: Callable[[Callable, Exception], None] | None = None):
        self.what = what
        self._on_error = on_error
        self._hooks: list[Callable] = []

    def add(self, fn: Callable) -> Callable:
        """Add FN (once: adding it again changes nothing); returns FN (usable as a decorator)."""
        if fn not in self._hooks:
            self._hooks.append(fn)
        return fn

    def remove(self, fn: Callable) -> None:
        """Remove FN; nothing happens when it is not there."""
        try:
            self._hooks.remove(fn)
        except ValueError:
            pass

    def run(self, *args) -> None:
        for fn in list(self._hooks):   # a hook may remove itself
            if self._on_error is None:
                fn(*args)
                continue
            try:
                fn(*args)
            except Exception as e:  # noqa: BLE001 - on_error decides
                self._on_error(fn, e)

    def __contains__(self, fn: Callable) -> bool:
        return fn in self._hooks

    def __iter__(self) -> Iterator[Callable]:
        return iter(list(self._hooks))

    def __len__(self) -> int:
        return len(self._hooks)

    def __repr__(self) -> str:
        return f"Hooks({self.what!r}, {len(self._hooks)} hooks)"
