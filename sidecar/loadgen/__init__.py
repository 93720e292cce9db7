"""An OpenAI-API load generator with steady, ramp and burst profiles."""
