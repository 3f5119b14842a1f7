# syntax=docker/dockerfile:1.7
# Milo gateway: orchestrates a conversation turn over the four model services; gRPC on
# 50050, the HTTP + WebSocket bridge on 8080. No model, no GPU: one image for every
# machine. Build from the repository root:
#   docker build -f deploy/gateway.Dockerfile -t milo/gateway .

ARG BASE_IMAGE=ubuntu:24.04

FROM ${BASE_IMAGE} AS base
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/milo \
    PATH=/opt/milo/bin:$PATH
# hadolint ignore=DL3008 # Ubuntu pins the interpreter by release; a version pin breaks on every point update
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

FROM base AS build
RUN python3 -m venv /opt/milo
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY protos ./protos
COPY services ./services
COPY gateway ./gateway
COPY deploy/install.sh ./deploy/install.sh
RUN --mount=type=cache,target=/root/.cache/pip sh deploy/install.sh gateway cpu .

FROM base AS runtime
LABEL org.opencontainers.image.title="milo-gateway" \
      org.opencontainers.image.description="Milo gateway: gRPC and HTTP/WebSocket front door"
RUN groupadd --system --gid 10001 milo \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/milo milo
COPY --from=build /opt/milo /opt/milo
USER 10001:10001
WORKDIR /home/milo
# Settings come from the environment (MILO_GATEWAY_*): docker-compose.yml points the
# *_ADDRESS settings at the other containers.
ENV MILO_GATEWAY_HOST=0.0.0.0 \
    MILO_GATEWAY_PORT=50050 \
    MILO_GATEWAY_HTTP_PORT=8080 \
    MILO_GATEWAY_METRICS_PORT=9150 \
    MILO_HEALTHCHECK_ADDRESS=127.0.0.1:50050
EXPOSE 50050 8080 9150
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "services.runtime.healthcheck"]
ENTRYPOINT ["python", "-m", "gateway"]
