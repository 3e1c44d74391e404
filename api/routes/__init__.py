"""One module per group of endpoints, named for what they serve."""
