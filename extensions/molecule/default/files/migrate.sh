#!/bin/sh
# Toy migration for the molecule scenarios: creates the job table once and records it in a
# Prisma-style ledger (_prisma_migrations), printing Prisma's words when there is nothing to do.
set -eu
db="$1"
q() { psql -X -q -tA -v ON_ERROR_STOP=1 -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}" -U "${PGUSER:-postgres}" -d "$db" -c "$1"; }
if [ "$(q "SELECT to_regclass('job') IS NOT NULL")" = "t" ]; then
  echo "No pending migrations to apply."
  exit 0
fi
q "CREATE TABLE IF NOT EXISTS _prisma_migrations (id text PRIMARY KEY, checksum text NOT NULL DEFAULT '',
   finished_at timestamptz, migration_name text NOT NULL, logs text, rolled_back_at timestamptz,
   started_at timestamptz NOT NULL DEFAULT now(), applied_steps_count int NOT NULL DEFAULT 0)"
q "CREATE TABLE job (id text PRIMARY KEY, status text NOT NULL DEFAULT 'pending')"
q "INSERT INTO _prisma_migrations (id, migration_name, finished_at, applied_steps_count)
   VALUES ('0001', '0001_init_job', now(), 1)"
echo "Applied migration 0001_init_job"
