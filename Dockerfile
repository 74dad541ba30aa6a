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

# gthread workers: long-poll config requests hold a thread, not a whole process.
CMD ["gunicorn", "selcontrol.wsgi:application", "--bind", "0.0.0.0:8000", \
     "--workers", "3", "--threads", "8", "--worker-class", "gthread", \
     "--access-logfile", "-", "--timeout", "60"]
