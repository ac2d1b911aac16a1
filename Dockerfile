# Dashboard Server image: one image for every process (web, worker, recorder, simulator).
# Build: docker build -t dashboard-server .   Run: see docker-compose.yml.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /venv
COPY requirements.txt /tmp/requirements.txt
RUN /venv/bin/pip install -r /tmp/requirements.txt

FROM python:3.11-slim
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DASHBOARD_BIND_HOST=0.0.0.0
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin dashboard
COPY --from=build /venv /venv
WORKDIR /app
COPY --chown=dashboard:dashboard . /app
USER dashboard
EXPOSE 8086 9108 9109
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8086/health', timeout=2).status != 200)"
CMD ["python", "manage.py", "serve"]
