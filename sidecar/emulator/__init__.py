"""A faithful vLLM stand-in for demos, tests and alert fire drills."""
