"""``--ip-masq``: flannel's NAT rules (pkg/trafficmngr/iptables/iptables.go ``masqRules``).

Traffic inside the flannel network is left alone; traffic from the network to the
outside is masqueraded. Rules live in their own chain ``FLANNEL-POSTRTG`` jumped to
from POSTROUTING, and are added only if ``iptables -C`` does not find them.
"""

from __future__ import annotations

import ipaddress
import logging

from provisioner.guest.flannel import iproute

log = logging.getLogger(__name__)

CHAIN = "FLANNEL-POSTRTG"
COMMENT = ["-m", "comment", "--comment", "flanneld masq"]
KUBE_PROXY_MARK = "0x4000/0x4000"


def masq_rules(
    network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network
) -> list[tuple[str, list[str]]]:
    """(chain, rulespec) pairs in the nat table, in order."""
    cluster, pod = str(network), str(subnet)
    return [
        ("POSTROUTING", [*COMMENT, "-j", CHAIN]),
        (CHAIN, ["-m", "mark", "--mark", KUBE_PROXY_MARK, *COMMENT, "-j", "RETURN"]),
        (CHAIN, ["-s", pod, "-d", cluster, *COMMENT, "-j", "RETURN"]),
        (CHAIN, ["-s", cluster, "-d", pod, *COMMENT, "-j", "RETURN"]),
        (CHAIN, ["!", "-s", cluster, "-d", pod, *COMMENT, "-j", "RETURN"]),
        (CHAIN, ["-s", cluster, "!", "-d", "224.0.0.0/4", *COMMENT, "-j", "MASQUERADE"]),
        (CHAIN, ["!", "-s", cluster, "-d", cluster, *COMMENT, "-j", "MASQUERADE"]),
    ]


def ensure(network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network) -> None:
    iproute.run(["iptables", "-w", "-t", "nat", "-N", CHAIN], check=False)
    for chain, spec in masq_rules(network, subnet):
        if not iproute.succeeds(["iptables", "-w", "-t", "nat", "-C", chain, *spec]):
            iproute.run(["iptables", "-w", "-t", "nat", "-A", chain, *spec])
    log.info("IP masquerade rules for %s in place", network)
