"""``samples drift``: did the output change between two windows, and how much?

``run.compare(root, baseline, current, config)`` loads both windows from the local sample
directory, ``analyse.evaluate_signals`` runs the tests, ``report.write_report`` renders the HTML,
``table.print_result`` the table. Import those submodules directly: this package imports nothing
itself, so ``vllm-sidecar samples --help`` (and :mod:`.names`) work without numpy and scipy, which
only the ``review`` extra installs.
"""
