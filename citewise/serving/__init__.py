"""What a running service keeps and enforces: the ask flow, caches, keys, limits, widgets."""
