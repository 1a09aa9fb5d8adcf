"""The HTTP layer: OpenAI-compatible protocol models, thin routes, errors, streaming."""
