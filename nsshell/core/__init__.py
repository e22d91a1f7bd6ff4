"""The workbench itself, in four wings: proc (helpers), ns (handles, creation), look (discovery, state, diff), store (persistence). No screen, no session."""
