#!/bin/sh
# The docker target's PostgreSQL entrypoint (infra/docker/services.py): what the
# postgresql role does once per cluster (tasks/create_cluster.yml, configure.yml's
# includes, tasks/database.yml), then the role's program (the arguments, exec'd).
#
# Written by hand because nothing packaged fits: Debian's pg_createcluster wants
# /etc/postgresql, and the official image's docker-entrypoint.sh is not in Debian.
# Runs as the service user. Idempotent: an initialised data directory (PG_VERSION)
# skips straight to the program, so a restarted container never re-initialises.
set -eu
: "${PGDATA:?}" "${CP_PG_BIN:?}" "${CP_PG_CONF_DIR:?}" "${CP_PG_RUN_DIR:?}"
: "${CP_PG_SUPERUSER:?}" "${CP_PG_PWFILE:?}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "first start: initdb in $PGDATA"
    "$CP_PG_BIN/initdb" --pgdata="$PGDATA" --username="$CP_PG_SUPERUSER" \
        --auth=scram-sha-256 --pwfile="$CP_PG_PWFILE" --encoding=UTF8 \
        --locale=C.UTF-8 --data-checksums >/dev/null
    cat "$CP_PG_CONF_DIR/first-start.conf" >> "$PGDATA/postgresql.conf"
    # Socket only while the roles are created: no client can connect half-way.
    "$CP_PG_BIN/pg_ctl" --pgdata="$PGDATA" --wait --silent \
        --options="-c listen_addresses='' -c unix_socket_directories=$CP_PG_RUN_DIR" start
    psql --no-psqlrc --quiet --host="$CP_PG_RUN_DIR" --username="$CP_PG_SUPERUSER" \
        --dbname=postgres --file="$CP_PG_CONF_DIR/first-start.sql"
    "$CP_PG_BIN/pg_ctl" --pgdata="$PGDATA" --wait --silent --mode=fast stop
    echo "first start: cluster created"
fi
exec "$@"
