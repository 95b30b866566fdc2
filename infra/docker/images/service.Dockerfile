# One service of the docker target (infra/docker/images.py): the runtime layer, the
# service's Debian packages from infra/catalog.py (the local target installs the same),
# its user with the catalog's fixed uid, the directories it writes, and for a Python
# service a venv installed from wheels the build context carries (no index needed).
ARG RUNTIME
FROM ${RUNTIME}
ARG PACKAGES
ARG SERVICE_USER
ARG SERVICE_UID
ARG DIRS=""
ARG VENV=""
ARG REQUIREMENTS=""

COPY wheels/ /tmp/wheels/
# `set -f`: no globbing of requirement extras such as psycopg[binary].
RUN set -f \
 && groupadd --system --gid "$SERVICE_UID" "$SERVICE_USER" \
 && useradd --system --uid "$SERVICE_UID" --gid "$SERVICE_UID" --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER" \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES \
 && rm -f /var/cache/apt/archives/*.deb \
 && if [ -n "$VENV" ]; then \
        python3 -m venv "$VENV" \
        && "$VENV/bin/pip" install -q --no-index --find-links /tmp/wheels $REQUIREMENTS; \
    fi \
 && rm -rf /tmp/wheels \
 && for dir in $DIRS; do install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 "$dir"; done
