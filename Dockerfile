# trackd container: build a wheel in one stage, run it as a non-root user in a slim one.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server ./server
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/trackd trackd \
    && mkdir -p /var/lib/trackd && chown trackd /var/lib/trackd
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER trackd
ENV TRACKD_LISTEN=0.0.0.0:50051 \
    TRACKD_DATA_DIR=/var/lib/trackd \
    TRACKD_LOG_FORMAT=json
VOLUME ["/var/lib/trackd"]
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
    CMD ["trackd", "health", "--address", "127.0.0.1:50051"]
ENTRYPOINT ["trackd"]
CMD ["serve"]
