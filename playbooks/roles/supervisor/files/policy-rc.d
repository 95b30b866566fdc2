#!/bin/sh
# Installed by CivicPulse Ops. The stack's services run under its own per-host
# supervisors, bound to the stack's addresses; Debian's packaged units for the same
# daemons must not start on install (they would listen on the default addresses,
# some on 0.0.0.0). Nor may sshd, installed for the SSH tests: they start their own
# on a loopback address. Nor Docker's daemon (and its containerd): the docker target's
# tests start a dockerd of their own without iptables, bridge or forwarding (Debian's
# would add a docker0 bridge, iptables rules and ip_forward=1). Anything else keeps
# Debian's default behaviour.
case "$1" in
  nginx|redis-server|postgresql|pgbouncer|prometheus|prometheus-*|supervisor|ssh|docker|containerd) exit 101 ;;
esac
exit 0
