"""The registry as the verbs use it: ``lab up`` and ``lab destroy`` for one lab,
``lab registry start|stop|status`` and ``lab doctor`` for the host."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from provisioner import background
from provisioner.box.cache import dir_size
from provisioner.config import REGISTRY_PORT, LabConfig
from provisioner.errors import LabError
from provisioner.registry import service
from provisioner.registry.images import SKOPEO, Images
from provisioner.registry.reference import ImageName

TOOLS = (service.REGISTRY_BIN, SKOPEO, service.RELAY_BIN)


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


@dataclass(frozen=True)
class Status:
    """The host's registries, the labs' relays and what the images take on disk."""

    root: Path
    local: service.RegistryInfo | None
    cache: service.RegistryInfo | None
    relays: tuple[tuple[service.Relay, int | None], ...]
    disk_bytes: int
    cache_bytes: int


def status(root: Path | None = None) -> Status:
    base = root or service.registry_root()
    images = Images(base)
    cache = service.cache(base)
    return Status(
        root=base,
        local=images.registry.running(),
        cache=cache.running(),
        relays=tuple(service.relays(base)),
        disk_bytes=images.disk_use(),
        cache_bytes=dir_size(cache.data) if cache.data.exists() else 0,
    )


def start(
    root: Path | None = None,
    port: int = REGISTRY_PORT,
    *,
    upstream: str | None = None,
    archives: Sequence[tuple[str, Path]] = (),
) -> tuple[service.RegistryInfo, list[ImageName]]:
    """The local registry running (and the cache, with ``upstream``), the box's images in it."""
    base = root or service.registry_root()
    info = service.ensure_local(base, port)
    if upstream:
        service.ensure_cache(base, info.port + 1, upstream)
    return info, Images(base, port).seed(archives)


def stop(root: Path | None = None) -> list[str]:
    """Stop the registry and its cache (the relays stay, and answer again once it runs);
    what was stopped."""
    base = root or service.registry_root()
    stopped = []
    for registry in (service.local(base), service.cache(base)):
        if registry.stop():
            stopped.append(registry.what)
    return stopped


def for_lab(
    config: LabConfig, archives: Sequence[tuple[str, Path]] = (), root: Path | None = None
) -> str:
    """``lab up``'s registry step: the host's registry running (started on the lab's
    port when it is not), the box's images in it, and the lab's relays on its gateway."""
    settings = config.registry
    if not settings.enabled:
        return "off (lab.yaml registry.enabled: false)"
    problem = background.bind_error(config.gateway, 0)
    if problem is not None and problem.errno == errno.EADDRNOTAVAIL:
        return (
            f"skipped: the lab's gateway {config.gateway} is not an address of this host "
            f"(libvirt at {config.libvirt_uri}), so no relay can listen there"
        )
    base = root or service.registry_root()
    info, added = start(base, settings.port, upstream=settings.upstream, archives=archives)
    service.ensure_relay(base, config.gateway, settings.port, info.port, config.name)
    detail = f"{config.registry_address} -> {info.address}"
    if settings.upstream:
        cache = service.cache(base).running()
        if cache is None:
            raise LabError("the registry's pull-through cache stopped while lab up started it")
        service.ensure_relay(base, config.gateway, settings.cache_port, cache.port, config.name)
        detail += f"; cache of {settings.upstream} at {config.gateway}:{settings.cache_port}"
    if added:
        detail += f"; added {', '.join(str(image) for image in added)}"
    return detail


def release_lab(config: LabConfig, root: Path | None = None) -> list[int]:
    """``lab destroy``: the lab's relays stopped; the registry and its images stay."""
    return service.stop_relays(config.gateway, root)
