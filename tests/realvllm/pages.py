"""Read numbers off a backend's own /metrics page (the classic text format)."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


async def fetch_page(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as reply:
        assert reply.status == 200
        return await reply.text()


def total(page: str, name: str, **labels: str) -> float:
    """Sum of every sample called ``name`` whose labels include ``labels``."""
    found = 0.0
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                found += sample.value
    return found


async def read_total(url: str, name: str, **labels: str) -> float:
    return total(await fetch_page(url), name, **labels)


def total_buckets(page: str, family: str) -> dict[str, float]:
    """``le`` -> cumulative count of one histogram family, summed over every other label."""
    found: dict[str, float] = {}
    for parsed in text_string_to_metric_families(page):
        if parsed.name != family:
            continue
        for sample in parsed.samples:
            if sample.name == family + "_bucket":
                le = sample.labels["le"]
                found[le] = found.get(le, 0.0) + sample.value
    return found
