# selcontrol: one image for the web, worker and beat processes.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

RUN groupadd --system selcontrol && useradd --system --gid selcontrol --home /app selcontrol

COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY . .
RUN pip install --no-deps . \
 && SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
 && chown -R selcontrol:selcontrol /app

USER selcontrol
EXPOSE 8000

# gunicorn's settings are selcontrol/gunicorn_conf.py (gthread workers sized for long-polls, no
# access log with query strings); in production nginx (deploy/nginx.conf) runs in front of it:
# see docker-compose.yml and docs/operations.md.
CMD ["gunicorn", "-c", "python:selcontrol.gunicorn_conf", "selcontrol.wsgi:application"]
