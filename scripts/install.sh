#!/usr/bin/env bash
# Install what lab needs on a Debian 12 host: Debian packages, a virtualenv with
# lab in it, and running libvirt daemons. Safe to re-run; does nothing twice.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LAB_VENV:-$ROOT/.venv}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

PACKAGES=(
  # virtualisation: qemu, libvirt, vagrant with the libvirt provider
  qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients dnsmasq-base
  vagrant vagrant-libvirt
  # box building and config drives
  debootstrap genisoimage e2fsprogs
  # etcd: the discovery service labs bootstrap from, the integration tier, host-side tools
  etcd-server etcd-client
  # python: a virtualenv and what libvirt-python builds with
  python3 python3-venv python3-dev gcc pkg-config libvirt-dev
  # tests: a real sshd on loopback for the remote tier
  openssh-server openssh-client
  # network faults (lab partition, lab netem): nft and tc on the host
  nftables iproute2
  # the image registry labs pull from (lab registry, lab image): the CNCF distribution
  # registry, skopeo for copies, socat for each lab's relay on its gateway; podman to push
  # from (and for the registry tests' push), busybox for the images tests and benchmarks build
  docker-registry skopeo socat podman busybox-static
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian's etcd-server starts a host etcd on 2379 where systemd runs; lab does not need it.
if [ -d /run/systemd/system ] && systemctl is-active --quiet etcd 2>/dev/null; then
  $SUDO systemctl disable --now etcd || true
fi
# Debian's docker-registry starts its own registry on :5000, every address, where systemd
# runs (its init script elsewhere); lab runs the registry itself, on loopback and gateways.
if [ -d /run/systemd/system ]; then
  if systemctl is-enabled --quiet docker-registry 2>/dev/null \
    || systemctl is-active --quiet docker-registry 2>/dev/null; then
    $SUDO systemctl disable --now docker-registry || true
  fi
elif [ -x /etc/init.d/docker-registry ]; then
  $SUDO /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
  $SUDO update-rc.d docker-registry disable >/dev/null 2>&1 || true
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtualenv $VENV"
  /usr/bin/python3 -m venv "$VENV"
fi
stamp="$VENV/.lab-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$ROOT/setup.py" -nt "$stamp" ]; then
  echo "==> installing lab into $VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e "$ROOT[dev]"
  touch "$stamp"
fi

echo "==> checking the host (lab doctor)"
"$VENV/bin/lab" doctor
