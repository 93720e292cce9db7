"""Grafana dashboards as code for vllm-sidecar.

The boards are built with the official ``grafana-foundation-sdk`` (pinned to the Grafana 11.6
build) and the generated JSON is committed under ``dashboards/json/`` (provisioning-ready, with a
``datasource`` variable) and ``dashboards/grafana-com/`` (the import variant with ``__inputs``).
Regenerate with ``python -m dashboards.generate``; ``--check`` fails on drift.
"""
