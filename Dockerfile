# trackd container: build a wheel in one stage, run it as a non-root user in a slim one.
# Lint: `hadolint Dockerfile` (make lint). Not built on the development machine (no Docker
# engine there); see README "Container".
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server ./server
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN groupadd --system --gid 10001 trackd \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/trackd trackd \
    && mkdir -p /var/lib/trackd && chown 10001:10001 /var/lib/trackd
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
# gRPC (50051), HTTP (8080: Connect, Optimizely Agent's /v1 REST API, /healthz and /readyz
# for load balancers) and metrics (9090) listen on every interface of the container's own
# network namespace, as `make run` serves gRPC and HTTP on loopback; TRACKD_HTTP_LISTEN=""
# turns HTTP off. trackd warns at start until TLS (TRACKD_TLS_CERT/KEY, which makes the HTTP
# port HTTPS too) and tokens (TRACKD_AUTH_TOKENS, checked on both ports) are set.
# The HEALTHCHECK reads TRACKD_HEALTH_*: with TLS, also set TRACKD_HEALTH_TLS_CA (and, for
# mutual TLS, TRACKD_HEALTH_TLS_CERT/KEY), e.g. to the mounted server certificate's CA.
ENV TRACKD_LISTEN=0.0.0.0:50051 \
    TRACKD_HTTP_LISTEN=0.0.0.0:8080 \
    TRACKD_METRICS_LISTEN=0.0.0.0:9090 \
    TRACKD_DATA_DIR=/var/lib/trackd \
    TRACKD_LOG_FORMAT=json \
    TRACKD_HEALTH_ADDRESS=127.0.0.1:50051
VOLUME ["/var/lib/trackd"]
EXPOSE 50051 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
    CMD ["trackd", "health"]
ENTRYPOINT ["trackd"]
CMD ["serve"]
