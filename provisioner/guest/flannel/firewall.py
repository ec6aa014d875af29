"""flannel's iptables rules (pkg/trafficmngr/iptables/iptables.go).

* ``forwardRules`` (flannel's ``-iptables-forward-rules``, on by default): docker sets
  the FORWARD chain's policy to DROP, so packets between containers of different
  nodes would die there; chain ``FLANNEL-FWD`` in the filter table, jumped to from
  FORWARD, accepts everything from or to the Network.
* ``masqRules`` (``-ip-masq``): chain ``FLANNEL-POSTRTG`` in the nat table, jumped to from
  POSTROUTING: no NAT inside the Network, MASQUERADE from it to the outside (multicast
  excepted) and from the outside into it.

Each rule is appended only if ``iptables -C`` does not find it, so restarts and the
periodic re-check add no copies.
"""

from __future__ import annotations

import ipaddress

from provisioner.guest.flannel import iproute

FORWARD_CHAIN = "FLANNEL-FWD"
MASQ_CHAIN = "FLANNEL-POSTRTG"
KUBE_PROXY_MARK = "0x4000/0x4000"

# (table, chain, rulespec)
Rule = tuple[str, str, list[str]]


def _comment(text: str) -> list[str]:
    return ["-m", "comment", "--comment", text]


def forward_rules(network: ipaddress.IPv4Network) -> list[Rule]:
    cluster, comment = str(network), _comment("flanneld forward")
    return [
        ("filter", "FORWARD", [*comment, "-j", FORWARD_CHAIN]),
        ("filter", FORWARD_CHAIN, ["-s", cluster, *comment, "-j", "ACCEPT"]),
        ("filter", FORWARD_CHAIN, ["-d", cluster, *comment, "-j", "ACCEPT"]),
    ]


def masq_rules(network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network) -> list[Rule]:
    cluster, pod, comment = str(network), str(subnet), _comment("flanneld masq")
    return [
        ("nat", "POSTROUTING", [*comment, "-j", MASQ_CHAIN]),
        ("nat", MASQ_CHAIN, ["-m", "mark", "--mark", KUBE_PROXY_MARK, *comment, "-j", "RETURN"]),
        ("nat", MASQ_CHAIN, ["-s", pod, "-d", cluster, *comment, "-j", "RETURN"]),
        ("nat", MASQ_CHAIN, ["-s", cluster, "-d", pod, *comment, "-j", "RETURN"]),
        ("nat", MASQ_CHAIN, ["!", "-s", cluster, "-d", pod, *comment, "-j", "RETURN"]),
        (
            "nat",
            MASQ_CHAIN,
            ["-s", cluster, "!", "-d", "224.0.0.0/4", *comment, "-j", "MASQUERADE"],
        ),
        ("nat", MASQ_CHAIN, ["!", "-s", cluster, "-d", cluster, *comment, "-j", "MASQUERADE"]),
    ]


def ensure(rules: list[Rule]) -> int:
    """Create the chains and append the missing rules; returns how many were added."""
    added = 0
    for table, chain in dict.fromkeys((table, chain) for table, chain, _ in rules):
        if chain.startswith("FLANNEL-") and not iproute.succeeds(
            ["iptables", "-w", "-t", table, "-S", chain]
        ):
            iproute.run(["iptables", "-w", "-t", table, "-N", chain])
    for table, chain, spec in rules:
        if not iproute.succeeds(["iptables", "-w", "-t", table, "-C", chain, *spec]):
            iproute.run(["iptables", "-w", "-t", table, "-A", chain, *spec])
            added += 1
    return added
