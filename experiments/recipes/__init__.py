"""The search for training defaults behind the default command (docs/strategies.md)."""
