"""Fixtures of the adversarial suite: each test module is one class of attack or odd setting.

The suite is the list of things the sidecar withstands; each test failed on the ``main`` it was
written against (issue 14) and passes since. It reuses the real parts other areas start: moto's
S3 server, the fake vLLM, the proxy and the sidecar process.
"""

from __future__ import annotations

from tests.proxy.conftest import fake_vllm, make_proxy, proxy
from tests.sampling.conftest import aws_env, moto_s3

__all__ = ["aws_env", "fake_vllm", "make_proxy", "moto_s3", "proxy"]
