#!/usr/bin/env bash
# The whole check: lint, layer contracts, types, then the suite on SQLite and on PostgreSQL.
# PostgreSQL is skipped with a plain message when no server answers, except in CI (CI=true),
# where it is required.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PG_URL="${CITYBRAIN_TEST_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres}"
export CITYBRAIN_TEST_PG_URL="$PG_URL"
# Two workers (pytest-xdist), a test file each at a time: every worker has its own data
# directory and databases. CITYBRAIN_TEST_WORKERS=0 runs in one process.
WORKERS="${CITYBRAIN_TEST_WORKERS:-2}"
PYTEST_ARGS=(-q -p no:cacheprovider)
if [ "$WORKERS" != "0" ]; then
  PYTEST_ARGS+=(-n "$WORKERS" --dist loadfile)
fi
PYTEST_ARGS+=("$@")

echo "== ruff"
$BIN/ruff check src tests bench migrations
$BIN/ruff format --check src tests bench migrations
echo "== import-linter (layer contracts)"
$BIN/lint-imports
echo "== mypy"
$BIN/mypy

pg_up() {
  $BIN/python - "$PG_URL" <<'PY' >/dev/null 2>&1
import sys, sqlalchemy
engine = sqlalchemy.create_engine(sys.argv[1], connect_args={"connect_timeout": 3})
with engine.connect() as conn:
    conn.exec_driver_sql("SELECT 1")
PY
}
if ! pg_up && [ "${CI:-}" = "true" ] && [ "$(id -u)" = "0" ] && command -v pg_ctlcluster >/dev/null; then
  echo "starting the local PostgreSQL cluster"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  sleep 2
fi

echo "== tests on SQLite"
CITYBRAIN_TEST_DB=sqlite $BIN/pytest "${PYTEST_ARGS[@]}"

if pg_up; then
  echo "== tests on PostgreSQL ($PG_URL)"
  CITYBRAIN_TEST_DB=postgresql $BIN/pytest "${PYTEST_ARGS[@]}"
elif [ "${CI:-}" = "true" ]; then
  echo "PostgreSQL is required in CI but does not answer at $PG_URL" >&2
  exit 1
else
  echo "== PostgreSQL not reachable at $PG_URL: SKIPPED the PostgreSQL run (set CITYBRAIN_TEST_PG_URL)"
fi
