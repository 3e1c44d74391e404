"""The terminal face: ``citewise`` and its commands (the composition root for the CLI)."""
