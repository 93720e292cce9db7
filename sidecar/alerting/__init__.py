"""Alerts: one catalogue, rendered as Prometheus rules and evaluated in-process.

* :mod:`.catalogue` - every alert, declared once (:mod:`.rules_engine`, :mod:`.slo`,
  :mod:`.rules_sidecar`), on the shapes of :mod:`.spec`;
* :mod:`.generate` - ``python -m sidecar.alerting.generate`` / ``vllm-sidecar alert-rules``:
  the rule file (:mod:`.rulefile`, :mod:`.recording`) and the example Alertmanager config;
* :mod:`.engine` - :class:`~.engine.AlertEngine`, the in-process evaluator (:mod:`.state`,
  :mod:`.history`, :mod:`.inputs`) and its notifiers (:mod:`.notify`).
"""
