"""The HTTP face of Citewise."""
