"""net commands (work in progress)."""

from nsshell.plugin import Annotated, Message, NsSet, Ref


def register(api):
    @api.command("net ls")
    def net_ls(sh, ref: Annotated[NsSet, Ref()] = None):
        """Links, addresses and routes of a network namespace (work in progress).

        Arguments:
          ref: the namespace set (default: the current context)
        """
        return Message("not yet")
