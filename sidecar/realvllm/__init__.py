"""A real vLLM (CPU build) for tests and the demo: install, tiny model, launch.

Each module has one job: ``install`` builds vLLM's own virtualenv outside the repo, ``model``
builds a tiny random Llama and its tokenizer without a hub, ``launch`` starts and stops
``vllm serve`` with every temp and cache file inside a work dir. Nothing here is imported by the
running sidecar.
"""
