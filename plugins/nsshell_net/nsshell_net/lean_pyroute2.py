"""Load pyroute2's netlink modules without running its package __init__.

`import pyroute2.netlink.rtnl.ifinfmsg` first runs `pyroute2/__init__.py`,
which imports every family pyroute2 has (ndb with sqlite, ipdb, conntrack,
nl80211, asyncio...): ~100 ms on the bench machine, most of a 100-namespace
lab's budget, against ~25 ms for the message classes the net plugin uses.

`load()` puts the package in sys.modules without executing it, so importing
its submodules runs only theirs.  The package stays whole for everyone else:
`from pyroute2 import IPRoute` (any name that is not a submodule) runs the real
__init__ then, once, in the same module object.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

PACKAGE = "pyroute2"


def load() -> None:
    if PACKAGE in sys.modules:
        return  # already imported (whole, or by an earlier load)
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {PACKAGE!r}", name=PACKAGE)
    package = importlib.util.module_from_spec(spec)

    def __getattr__(attr: str):
        # `from pyroute2 import config` asks the package for a submodule first.
        if not attr.startswith("__") and importlib.util.find_spec(f"{PACKAGE}.{attr}"):
            return importlib.import_module(f"{PACKAGE}.{attr}")
        del package.__dict__["__getattr__"]
        spec.loader.exec_module(package)  # the whole package after all
        return getattr(package, attr)

    package.__getattr__ = __getattr__
    sys.modules[PACKAGE] = package
