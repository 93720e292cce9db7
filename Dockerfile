# syntax=docker/dockerfile:1
# vllm-sidecar: the observability sidecar and OpenAI-compatible proxy that runs beside vLLM.
#
#   docker build -t vllm-sidecar .
#   docker run --rm -p 8080:8080 -p 9400:9400 vllm-sidecar run --upstream http://vllm:8000
#
# Two stages: the builder turns the project and its dependencies into wheels; the final stage
# installs only those wheels (from a bind mount, so no wheel stays in a layer) onto
# python:3.11-slim, removes pip/setuptools/wheel, and runs as an unprivileged user. Nothing in the
# final image writes outside /var/spool/vllm-sidecar and /tmp, so it runs with a read-only root
# filesystem (the Helm chart mounts both as volumes).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
# Wheels for the project and every runtime dependency (uvloop through the "fast" extra).
RUN pip wheel --wheel-dir /wheels '.[fast]'

FROM ${PYTHON_IMAGE}
ARG UID=10001
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/wheels 'vllm-sidecar[fast]' \
    && python -m pip uninstall --yes pip setuptools wheel \
    && groupadd --system --gid "${UID}" sidecar \
    && useradd --system --uid "${UID}" --gid sidecar --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin sidecar \
    && mkdir -p /var/spool/vllm-sidecar \
    && chown "${UID}:${UID}" /var/spool/vllm-sidecar
VOLUME ["/var/spool/vllm-sidecar"]
# The relative defaults (./spool, ./samples-data) land on the volume; no VLLM_SIDECAR_* variable
# is set here, because the environment would beat a --config file.
WORKDIR /var/spool/vllm-sidecar
USER ${UID}:${UID}
# 8080: the OpenAI-compatible proxy; 9400: /metrics, /healthz, /readyz, /api/v1.
EXPOSE 8080 9400
# For `docker run` and compose; Kubernetes ignores it and uses the chart's probes.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9400/healthz', timeout=2)"]
ENTRYPOINT ["vllm-sidecar"]
CMD ["run"]
