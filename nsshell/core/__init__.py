"""The workbench itself: handles, helpers, discovery, persistence, diff. No screen."""
