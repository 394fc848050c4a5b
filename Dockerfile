# Build stage: install the locked dependency tree (every file checked against its hash in
# requirements.txt) into a virtualenv, compiling what needs it with the build tools, which stay
# behind in this stage; then the project itself, without resolving anything again.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.txt ./
RUN pip install --no-cache-dir --require-hashes -r requirements.txt
COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers
RUN pip install --no-cache-dir --no-deps .

# Runtime stage: slim image, no compilers, non-root user.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT=8000 PATH=/opt/venv/bin:$PATH
COPY --from=build /opt/venv /opt/venv
RUN useradd --create-home --uid 10001 intercom-sync
USER intercom-sync
WORKDIR /home/intercom-sync
EXPOSE 8000
# The Procfile's web line (workers/ops/processes.py); server settings live in app/gunicorn_conf.py.
CMD ["gunicorn", "--config", "python:app.gunicorn_conf", "app:create_app()"]
