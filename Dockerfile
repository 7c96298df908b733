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
ENTRYPOINT ["policyfit"]
CMD ["demo"]
