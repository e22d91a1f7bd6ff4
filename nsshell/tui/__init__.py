"""Full-screen views (prompt_toolkit), next to the REPL: they draw what a command hands
them and hold no command logic.  Imported only when a view is drawn."""
