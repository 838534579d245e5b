"""The strategy study: every strategy x seeds, scored, and the report docs/strategies.md."""
