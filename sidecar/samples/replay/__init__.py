"""``samples replay``: re-send sampled requests to a candidate deployment, resumably.

:func:`~sidecar.samples.replay.plan.select_items` picks the records to replay (through the
samples dataset, so the sampler's internals are never imported), :mod:`.run` sends them with
bounded concurrency and rate while :mod:`.journal` notes each send, and :mod:`.store` writes the
candidate answers as v1 records in the same Hive layout under ``<runs>/<run id>``.
"""

from sidecar.samples.replay.plan import ReplayItem, ReplaySelection, select_items
from sidecar.samples.replay.run import ReplayOptions, ReplaySummary, replay

__all__ = [
    "ReplayItem",
    "ReplayOptions",
    "ReplaySelection",
    "ReplaySummary",
    "replay",
    "select_items",
]
