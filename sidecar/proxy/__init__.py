"""OpenAI-compatible pass-through with per-request timing."""
