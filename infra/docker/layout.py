"""Where a stack lives in Docker: names, the private network and each host's address.

Pure data, no Pulumi: the Pulumi program, the deploy entry points and the GameDay
driver all derive container, network and volume names from here, so they agree.

A stack host becomes a *network namespace*, not a container: a small sandbox
container (`sleep infinity`, like the `pause` container of a Kubernetes pod) owns
the host's namespace,
carries the host name as its network alias and gets a fixed address; every service
of the host runs in its own container joined to that namespace
(`network_mode=container:<sandbox>`). So `db:5432` is PostgreSQL and `db:9187` its
exporter, exactly as `127.0.10.32:5432` and `:9187` are on the local target, and an
exporter reaches its service on 127.0.0.1 (nginx only serves `stub_status` there).
Killing or restarting a service container never takes its host's address away.

Addresses mirror the stack config: a host keeps its offset within the block the
stack's hosts share (127.0.10.21 in 127.0.10.0/24 is .21 of the network). The network
is `docker.subnet` from the stack config or, by default, the block mapped into
172.16.0.0/12: 127.a.b.0/24 becomes 172.16.0.0 + (a.b.0 mod 2^20), so 127.0.10.0/24
becomes 172.16.10.0/24. Stacks on different loopback ranges therefore get disjoint Docker
networks, and 172.16.0.0/16 is outside Docker's default address pools (172.17-31,
192.168). Fixed addresses matter because nginx resolves its upstream names once, at
start: a host reconnected after a partition must come back on the same address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from infra.topology import LOOPBACK, Topology
from infra.yaml_source import ConfigError

#: Docker-side address block the loopback addresses are mapped into.
DOCKER_BASE = ipaddress.ip_network("172.16.0.0/12")
#: Label keys every resource of a stack carries (the GameDay driver filters on them).
LABEL_STACK = "civicpulse.stack"
LABEL_HOST = "civicpulse.host"
LABEL_SERVICE = "civicpulse.service"


@dataclass(frozen=True)
class HostLayout:
    name: str
    #: The network alias other hosts use: the stack's host name.
    alias: str
    #: Container that owns the host's network namespace.
    sandbox: str
    ip: str
    #: The host's loopback address in the stack config (published ports bind to it).
    address: str


@dataclass(frozen=True)
class DockerLayout:
    stack: str
    network: str
    subnet: str
    gateway: str
    hosts: dict[str, HostLayout]

    @property
    def edge_network(self) -> str:
        """Where published ports live (an internal network publishes none)."""
        return f"{self.network}-edge"

    def container(self, host: str, service: str) -> str:
        return f"cp-{self.stack}-{host}-{service}"

    def volume(self, host: str, service: str) -> str:
        return f"cp-{self.stack}-{host}-{service}-data"

    def host_of_address(self, address: str) -> HostLayout | None:
        """The host whose stack-config address (or Docker address) this is."""
        for host in self.hosts.values():
            if address in (host.address, host.ip, host.alias):
                return host
        return None


def _mapped(address: ipaddress.IPv4Address) -> ipaddress.IPv4Address:
    offset = (int(address) - int(LOOPBACK.network_address)) % DOCKER_BASE.num_addresses
    return ipaddress.IPv4Address(int(DOCKER_BASE.network_address) + offset)


def layout_for(topology: Topology) -> DockerLayout:
    """Names and addresses of the stack's Docker resources; ConfigError if unmappable."""
    addresses = {h.name: ipaddress.IPv4Address(h.address) for h in topology.hosts}
    # The smallest block (at most a /24, so there is room for the gateway) holding
    # every host of the stack.
    covering = ipaddress.ip_network(f"{next(iter(addresses.values()))}/24", strict=False)
    while not all(a in covering for a in addresses.values()):
        covering = covering.supernet()
    if covering.prefixlen < DOCKER_BASE.prefixlen:
        raise ConfigError([f"{topology.source}: the hosts' addresses span {covering}; the "
                           f"docker target needs them within one /{DOCKER_BASE.prefixlen} "
                           "(e.g. all in 127.0.10.0/24)"])
    if topology.docker.subnet:
        subnet = ipaddress.ip_network(topology.docker.subnet)
        if subnet.num_addresses < covering.num_addresses:
            raise ConfigError([f"{topology.source}: docker.subnet {subnet} is smaller than "
                               f"the block the hosts' addresses span ({covering}); use at "
                               f"least a /{covering.prefixlen}"])
    else:
        subnet = ipaddress.ip_network(
            f"{_mapped(covering.network_address)}/{covering.prefixlen}")
    gateway = subnet.network_address + 1
    problems = []
    hosts = {}
    for name, address in addresses.items():
        # The host keeps its offset in the block: 127.0.10.21 is .21 on the network.
        ip = subnet.network_address + (int(address) - int(covering.network_address))
        if ip in (subnet.network_address, subnet.broadcast_address, gateway):
            role = "gateway" if ip == gateway else "network or broadcast address"
            problems.append(f"{topology.source}: hosts.{name}.address {address} maps to {ip}, "
                            f"the {role} of the Docker network {subnet}; give {name} "
                            "another address")
        hosts[name] = HostLayout(name=name, alias=name, sandbox=f"cp-{topology.stack}-{name}",
                                 ip=str(ip), address=str(address))
    if problems:
        raise ConfigError(problems)
    return DockerLayout(stack=topology.stack, network=f"cp-{topology.stack}",
                        subnet=str(subnet), gateway=str(gateway), hosts=hosts)
