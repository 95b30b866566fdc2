# The docker target's runtime layer (infra/docker/images.py): the stack's base image
# (stack config `docker.base_image`, Debian bookworm), apt pointed where this machine's
# apt points, the package lists fetched once for every service image built on it.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
# The clients every image has (infra/catalog.py CLIENT_PACKAGES): health checks use them.
ARG PACKAGES

# host-apt/ holds this machine's apt sources and settings when it runs bookworm too
# (infra/docker/build_contexts.py); empty, the base image's own sources are used.
COPY policy-rc.d /usr/sbin/policy-rc.d
COPY host-apt/ /tmp/host-apt/
RUN chmod 0755 /usr/sbin/policy-rc.d \
 && if [ -n "$(ls -A /tmp/host-apt)" ]; then \
        rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* \
        && cp -R /tmp/host-apt/. /etc/apt/; \
    fi \
 && rm -rf /tmp/host-apt \
 && apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        ca-certificates $PACKAGES \
 && rm -f /var/cache/apt/archives/*.deb
