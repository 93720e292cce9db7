"""Scraping vLLM's /metrics: exposition parsing, the metric catalogue, and the scrape loop."""
