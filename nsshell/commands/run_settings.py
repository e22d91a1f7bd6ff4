"""run's session settings (`set run_uid 1000`, `set netns_exec off`...): added to every
session from the start, so they live here, apart from run.py, which start-up does not
import (the registry imports it on the first `run`)."""

from __future__ import annotations

from .. import session as _session_mod
from ..session import _bool


def _install_settings(session) -> None:
    session.add_setting("netns_exec", True, _bool,
                        "in a joined network namespace without its mount namespace, `run` "
                        "gives what `ip netns exec` gives (/sys and /etc/netns/NAME)")
    # run's options as session defaults (`set run_uid 1000`; `set run_uid none` unsets)
    for name, parse, help in (
            ("uid", _opt_id, "default --uid of run"),
            ("gid", _opt_id, "default --gid of run"),
            ("groups", _opt_groups, "default --groups of run (comma-separated ids)"),
            ("cwd", _opt_text, "default --cwd of run"),
            ("root", _opt_text, "default --root of run")):
        session.add_setting(f"run_{name}", None, parse, help + "; none: unset")
    for flag in ("env_from_target", "keep_caps", "cgroup", "pid1"):
        session.add_setting(f"run_{flag}", False, _bool,
                            f"run as with --{flag.replace('_', '-')} unless told otherwise")


def _opt_id(text: str):
    if text.lower() in ("", "none"):
        return None
    if not text.isdigit() or int(text) >= 2**32 - 1:
        raise ValueError("expected a numeric id, or none")
    return int(text)


def _opt_groups(text: str):
    if text.lower() in ("", "none"):
        return None
    return ",".join(str(_opt_id(g)) for g in text.split(",") if g)


def _opt_text(text: str):
    return None if text.lower() in ("", "none") else text


_session_mod.INIT_HOOKS.add(_install_settings)
