"""Alert catalogue, evaluator and notifiers."""
