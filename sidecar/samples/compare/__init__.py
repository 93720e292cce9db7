"""``samples compare RUN``: did the candidate answer the same prompts worse than production?

:mod:`.pairs` pairs each replayed answer with the original, :mod:`.signals` holds the paired
tests, :mod:`.analyse` applies Holm and the floors, :mod:`.report`/:mod:`.table` show the result.
Import those submodules directly: this package imports nothing itself, so ``samples --help``
works without numpy (which only the ``review`` extra installs).
"""
