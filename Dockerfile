# daxproxy's container image: a slim Python runtime with daxproxy in a virtual environment.
#
#   docker build -t daxproxy .                             # the proxy, for a real upstream
#   docker build -t daxproxy --build-arg EXTRAS=embedded . # + moto's server: runs with no upstream
#   docker run --rm -p 8111:8111 -e DAXPROXY_UPSTREAM=aws -e AWS_REGION=eu-west-1 daxproxy
#
# Settings come from DAXPROXY_<KEY> variables, a TOML file (--config or DAXPROXY_CONFIG) or the
# arguments after the image name (config/README.md). Upstream credentials come from the AWS
# chain: environment variables, a mounted profile, or the ECS task / EKS pod role.
#
# Written for the classic builder as well as BuildKit (no RUN --mount, no heredocs), so that
# docker-compose v1 builds it too.

# Python 3.11 is what the test suite runs on; pyproject.toml requires >= 3.11.
ARG PYTHON_VERSION=3.11

# --- builder: daxproxy's wheel and its dependencies, installed into /opt/daxproxy ----------
FROM python:${PYTHON_VERSION}-slim-bookworm AS builder

# Extras of pyproject.toml's [project.optional-dependencies], comma-separated. "fast"
# (uvloop, the event loop the proxy picks where installed) is in by default. "embedded"
# (moto[server], for running with no upstream) makes the venv about 300 MB instead of 52 MB,
# so the default image is the proxy alone, for DynamoDB or a DynamoDB-compatible server.
ARG EXTRAS="fast"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# The venv gets no pip or setuptools of its own (26 MB the proxy never uses): the base
# image's pip installs into it with --python.
RUN python -m venv --without-pip /opt/daxproxy
WORKDIR /src

# Dependencies first, from the project's metadata alone, so that a change to the code does not
# download them again: this layer is rebuilt only when pyproject.toml (or README.md, the
# package's long description) changes. The package installed here is a stub; the real one
# replaces it below.
COPY pyproject.toml README.md ./
COPY daxproxy/__init__.py daxproxy/__init__.py
RUN pip --python /opt/daxproxy/bin/python install ".${EXTRAS:+[$EXTRAS]}"

# The package itself, as a wheel (never an editable install), over the stub.
COPY daxproxy daxproxy
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && pip --python /opt/daxproxy/bin/python install --no-deps --force-reinstall \
        /wheels/daxproxy-*.whl \
    && pip --python /opt/daxproxy/bin/python check \
    && /opt/daxproxy/bin/daxproxy --version

# --- runtime: the venv on a fresh slim image, run as an unprivileged user -------------------
FROM python:${PYTHON_VERSION}-slim-bookworm

# A fixed numeric id, so that Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 daxproxy \
    && useradd --system --uid 10001 --gid daxproxy --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin daxproxy

# The venv's interpreter links to /usr/local/bin/python3, the same in both stages.
COPY --from=builder /opt/daxproxy /opt/daxproxy

# DAXPROXY_HOST: listen on every interface of the container, not only its loopback (the
# default outside containers); a published port or a pod's probes reach 0.0.0.0 only.
# DAXPROXY_WORKERS: one serving process per CPU the container may use (its cpuset and its
# --cpus quota); each has its own caches, so give the container memory for N workers' cache
# budgets (README, Workers). DAXPROXY_WORKERS=1 runs one process.
# DAXPROXY_DATA_DIR: DAX's attribute-list ids (the user has no home directory), on a volume
# so that they outlive the container: mount one there to keep them across re-creations.
# The .pyc files were compiled at install time; the user cannot write new ones anyway.
ENV PATH=/opt/daxproxy/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DAXPROXY_HOST=0.0.0.0 \
    DAXPROXY_WORKERS=auto \
    DAXPROXY_DATA_DIR=/var/lib/daxproxy

RUN mkdir /var/lib/daxproxy && chown 10001:10001 /var/lib/daxproxy
VOLUME /var/lib/daxproxy

USER 10001:10001
EXPOSE 8111

# What `docker stop`, ECS and Kubernetes send: the proxy stops listening and lets requests in
# flight finish for shutdown_timeout_millis (10 s); give it a longer grace period than that.
STOPSIGNAL SIGTERM

# /healthz answers while the process serves (/readyz also asks the upstream: that is the
# readiness probe's job, not liveness'). The slim image has no curl: Python's urllib, with
# proxies off so that an HTTP_PROXY in the environment cannot intercept 127.0.0.1. The port
# is DAXPROXY_PORT's when that is a number (Kubernetes may set it to tcp://..., which the
# proxy ignores too).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; p = os.environ.get('DAXPROXY_PORT', ''); p = p if p.isdigit() else '8111'; r.build_opener(r.ProxyHandler({})).open('http://127.0.0.1:' + p + '/healthz', timeout=4)"]

ENTRYPOINT ["daxproxy"]
CMD []
