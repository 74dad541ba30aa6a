.PHONY: run test lint format worker beat e2e bench migrate sel-check

run:  ## start the control plane on http://127.0.0.1:8000 with demo data
	./scripts/run

test:  ## the whole test suite against PostgreSQL and Redis (browser tests included)
	./scripts/test

e2e:  ## browser tests only
	./scripts/test tests/e2e

lint:  ## ruff check, ruff format --check, test names that read as sentences, mypy (pyproject.toml)
	./scripts/bootstrap && .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/python scripts/check_test_names.py
	DEBUG=true .venv/bin/mypy  # DEBUG: the django-stubs plugin imports the settings, which want a SECRET_KEY otherwise

format:
	./scripts/bootstrap && .venv/bin/ruff format . && .venv/bin/ruff check --fix .

worker:  ## a Celery worker (needs REDIS_URL)
	.venv/bin/celery -A selcontrol worker -l info

beat:  ## the Celery beat scheduler (needs REDIS_URL)
	.venv/bin/celery -A selcontrol beat -l info

bench:  ## all benchmarks; see bench/README.md
	./scripts/bootstrap && .venv/bin/python bench/run_all.py

migrate:
	.venv/bin/python manage.py migrate

sel-check:  ## the migration against a checkout of the Sel bot: make sel-check SEL=/path/to/SEL
	@test -n "$(SEL)" || (echo "usage: make sel-check SEL=/path/to/SEL-checkout" && exit 2)
	./scripts/bootstrap && .venv/bin/python scripts/sel_check.py --sel "$(SEL)"
