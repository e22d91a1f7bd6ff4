"""The interactive front end (prompt_toolkit): a prompt loop over engine.run_line."""
