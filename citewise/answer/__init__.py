"""Writing answers from passages: providers, prompts, citation verification."""
