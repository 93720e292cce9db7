"""Semantic signals: what the answers (and the prompts) *mean*, not only their shape.

Needs the optional extra ``[semantic]`` (all-MiniLM-L6-v2 shipped inside a PyPI wheel, run on the
CPU build of torch, loaded with the network disabled). :mod:`.embed` loads it, :mod:`.twosample`
holds the calibrated tests, :mod:`.drift` and :mod:`.similarity` apply them to ``drift`` and
``compare``.
"""
