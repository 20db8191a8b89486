# The marconi image: every process (`marconi node`, `proxy`, `worker`) and the admin CLI.
#   docker build -t marconi:0.1.0 .
# The Helm chart (charts/marconi) runs it as user 10001 with a read-only root filesystem.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/marconi
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ground ./ground
COPY wire ./wire
COPY node ./node
COPY catalog ./catalog
COPY proxy ./proxy
COPY migrate ./migrate
COPY marconi ./marconi
# The project and its runtime dependencies only (no test extras); bytecode compiled now, since
# the running container cannot write it.
RUN /opt/marconi/bin/pip install . \
 && /opt/marconi/bin/python -m compileall -q /opt/marconi/lib

FROM python:3.11-slim
ENV PATH=/opt/marconi/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --gid 10001 marconi \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin marconi
COPY --from=build /opt/marconi /opt/marconi
USER 10001:10001
WORKDIR /tmp
# The proxy, a node, the worker's metrics.
EXPOSE 8888 8889 9188
ENTRYPOINT ["marconi"]
CMD ["--help"]
