"""Images into and out of the host's registry: ``lab image import|push|ls|rm``.

Copies are skopeo's (Debian's ``skopeo``): it reads a ``docker save`` or OCI
archive, docker's daemon or podman's storage, and pushes to the registry the
way docker does, every blob first and the manifest last, so a copy that fails
leaves no tag: nothing half-imported is visible under the name (its orphaned
blobs go at the next ``lab image rm``). Listing reads the registry's own API.

Removing a tag is what distribution 2.8 has no API for (a manifest DELETE
removes every tag of that image), so ``lab image rm`` removes the tag's link
in the registry's storage while the registry runs read-only, then runs
distribution's ``garbage-collect --delete-untagged`` to free the blobs no
tag needs any more, and starts the registry again (read-write, caches empty).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from provisioner import background
from provisioner.box.cache import dir_size
from provisioner.config import REGISTRY_PORT
from provisioner.errors import RegistryError
from provisioner.registry import service
from provisioner.registry.reference import ImageName, parse_reference

log = logging.getLogger(__name__)

SKOPEO: Final = "skopeo"
COPY_TIMEOUT: Final = 3600.0
GC_TIMEOUT: Final = 600.0
ENGINE_TIMEOUT: Final = 30.0
DISK_MARGIN: Final = 64 * 2**20  # beyond the image itself: the registry's own files, logs
ArchiveKind = Literal["docker-archive", "oci-archive"]
Engine = Literal["docker", "podman"]
ENGINES: Final = ("docker", "podman")
MANIFEST_TYPES: Final = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
ARCHIVE_HINT: Final = (
    "give a `docker save NAME -o FILE.tar` or `podman save` archive, or an OCI archive "
    "(`skopeo copy ... oci-archive:FILE.tar`)"
)
SPACE_HINT: Final = "free disk space there, or remove images with `lab image rm NAME`"
COMPRESSED: Final = (
    (b"\x1f\x8b", "gzip", "gzip"),
    (b"BZh", "bzip2", "bzip2"),
    (b"\xfd7zXZ\x00", "xz", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd", "zstd"),
)
OCI_REF_NAME: Final = "org.opencontainers.image.ref.name"
CONTAINERD_NAME: Final = "io.containerd.image.name"


# --- archives -------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveImage:
    """One image in an archive: skopeo's source for it and the names it carries."""

    source: str  # "docker-archive:/x.tar:@0", "oci-archive:/x.tar:ref"
    names: tuple[str, ...]


@dataclass(frozen=True)
class Archive:
    path: Path
    kind: ArchiveKind
    images: tuple[ArchiveImage, ...]


def _member_json(tar: tarfile.TarFile, name: str, path: Path) -> Any:
    member = tar.extractfile(name)
    if member is None:
        raise RegistryError(f"{path}: {name} in the archive is not a file", hint=ARCHIVE_HINT)
    try:
        return json.loads(member.read())
    except ValueError as exc:
        raise RegistryError(
            f"{path}: {name} in the archive is not JSON: {exc}", hint=ARCHIVE_HINT
        ) from exc


def inspect_archive(path: Path) -> Archive:
    """What an archive holds: a ``docker save`` archive (``manifest.json`` at its top)
    or an OCI image layout (``oci-layout`` and ``index.json``); anything else is an
    error naming the file."""
    if not path.is_file():
        raise RegistryError(f"{path}: no such file", hint=ARCHIVE_HINT)
    with path.open("rb") as head:
        magic = head.read(6)
    for prefix, kind, tool in COMPRESSED:
        if magic.startswith(prefix):
            raise RegistryError(
                f"{path}: a {kind}-compressed archive; skopeo reads plain tar archives only",
                hint=f"decompress it first (`{tool} -dk {path}`) and import the .tar",
            )
    path = path.resolve()  # skopeo's source names it, whatever its working directory
    if ":" in str(path):
        raise RegistryError(
            f"{path}: skopeo reads a ':' in an archive's path as the start of an image name",
            hint="rename the file, or link it under a name without ':'",
        )
    try:
        with tarfile.open(path, "r:") as tar:
            names = {member.name.removeprefix("./") for member in tar.getmembers()}
            if "manifest.json" in names:
                manifest = _member_json(tar, _real_name(tar, "manifest.json"), path)
                return _docker_archive(path, manifest)
            if {"oci-layout", "index.json"} <= names:
                index = _member_json(tar, _real_name(tar, "index.json"), path)
                return _oci_archive(path, index)
    except tarfile.ReadError as exc:
        raise RegistryError(
            f"{path}: not an image archive: not a tar file",
            hint=ARCHIVE_HINT,
        ) from exc
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise RegistryError(f"{path}: not an image archive: {exc}", hint=ARCHIVE_HINT) from exc
    raise RegistryError(
        f"{path}: not an image archive (neither a docker save archive with manifest.json "
        "nor an OCI layout with oci-layout and index.json)",
        hint=ARCHIVE_HINT,
    )


def _real_name(tar: tarfile.TarFile, name: str) -> str:
    return next(m.name for m in tar.getmembers() if m.name.removeprefix("./") == name)


def _docker_archive(path: Path, manifest: Any) -> Archive:
    if not isinstance(manifest, list) or not manifest:
        raise RegistryError(f"{path}: manifest.json lists no image", hint=ARCHIVE_HINT)
    images = []
    for index, entry in enumerate(manifest):
        tags = entry.get("RepoTags") if isinstance(entry, dict) else None
        source = f"docker-archive:{path}" + (f":@{index}" if len(manifest) > 1 else "")
        images.append(ArchiveImage(source, tuple(t for t in tags or () if isinstance(t, str))))
    return Archive(path, "docker-archive", tuple(images))


def _oci_archive(path: Path, index: Any) -> Archive:
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not manifests:
        raise RegistryError(f"{path}: index.json lists no image", hint=ARCHIVE_HINT)
    images = []
    for entry in manifests:
        notes = entry.get("annotations") or {} if isinstance(entry, dict) else {}
        ref = notes.get(OCI_REF_NAME)
        full = notes.get(CONTAINERD_NAME) or (ref if ref and (":" in ref or "/" in ref) else None)
        source = f"oci-archive:{path}" + (f":{ref}" if ref and len(manifests) > 1 else "")
        images.append(ArchiveImage(source, (full,) if full else ()))
    return Archive(path, "oci-archive", tuple(images))


def import_plan(archive: Archive, name: str | None) -> list[tuple[str, ImageName]]:
    """``(skopeo source, name in the registry)`` for every image to copy: each name the
    archive carries, or ``name`` for an archive of one image."""
    if name is not None:
        if len(archive.images) != 1:
            raise RegistryError(
                f"{archive.path}: holds {len(archive.images)} images; --name names one",
                hint="leave out --name to import each under the name it carries",
            )
        return [(archive.images[0].source, parse_reference(name))]
    plan: list[tuple[str, ImageName]] = []
    for number, image in enumerate(archive.images, start=1):
        if not image.names:
            raise RegistryError(
                f"{archive.path}: image {number} of {len(archive.images)} carries no name",
                hint="name it: `lab image import FILE --name NAME[:TAG]`",
            )
        plan.extend(
            (image.source, parse_reference(text, what=f"{archive.path}: name"))
            for text in image.names
        )
    return plan


# --- the registry's API -----------------------------------------------------------


def _get(url: str, accept: Sequence[str] = (), timeout: float = 30.0) -> tuple[Any, str]:
    """A JSON document from the registry and its Docker-Content-Digest; None on 404."""
    headers = {"Accept": ", ".join(accept)} if accept else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http on loopback
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310 - loopback
            return json.loads(reply.read()), reply.headers.get("Docker-Content-Digest", "")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None, ""
        raise RegistryError(
            f"the lab registry answered {url} with {exc.code} {exc.reason}"
        ) from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RegistryError(
            f"the lab registry does not answer {url}: {exc}",
            hint="`lab registry status` says whether it runs; `lab registry start`",
        ) from exc


@dataclass(frozen=True)
class ImageRow:
    """One tag in the registry: its name, manifest digest and stored (compressed) size."""

    name: ImageName
    digest: str
    size: int | None  # None for a multi-platform index


def tags(url: str, repository: str) -> list[str]:
    document, _ = _get(f"{url}/v2/{repository}/tags/list")
    return sorted((document or {}).get("tags") or [])


def manifest(url: str, image: ImageName) -> tuple[dict[str, Any] | None, str]:
    document, digest = _get(f"{url}/v2/{image.repository}/manifests/{image.tag}", MANIFEST_TYPES)
    return document, digest


def exists(url: str, image: ImageName) -> bool:
    return manifest(url, image)[0] is not None


def catalog(url: str, page: int = 1000) -> list[str]:
    """Every repository, page by page (distribution answers at most 1000 at a time)."""
    found: list[str] = []
    while True:
        after = f"&last={found[-1]}" if found else ""
        document, _ = _get(f"{url}/v2/_catalog?n={page}{after}")
        names = (document or {}).get("repositories") or []
        found.extend(names)
        if len(names) < page:
            return sorted(found)


def list_images(url: str) -> list[ImageRow]:
    """Every tag of every repository, sorted by name."""
    rows = []
    for repository in catalog(url):
        for tag in tags(url, repository):
            image = ImageName(repository, tag)
            document, digest = manifest(url, image)
            if document is None:
                continue
            rows.append(ImageRow(image, digest, _stored_size(document)))
    return rows


def _stored_size(document: dict[str, Any]) -> int | None:
    if "layers" not in document:
        return None
    parts = [document.get("config") or {}, *document["layers"]]
    return sum(int(part.get("size", 0)) for part in parts)


# --- copies ---------------------------------------------------------------------------


def check_space(data: Path, needed: int, what: str) -> None:
    """A clear error when the registry's disk cannot take ``needed`` bytes for ``what``."""
    data.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(data).free
    if free < needed + DISK_MARGIN:
        raise RegistryError(
            f"{what}: not enough disk space for the lab registry in {data}: "
            f"{_mb(needed)} needed (and {_mb(DISK_MARGIN)} to spare), {_mb(free)} free",
            hint=SPACE_HINT,
        )


def _mb(size: int) -> str:
    return f"{size / 1e6:.0f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"


def skopeo_copy(source: str, image: ImageName, registry: service.Registry, what: str) -> None:
    """Copy ``source`` into the running ``registry`` as ``image``; errors name ``what``."""
    binary = shutil.which(SKOPEO)
    if binary is None:
        raise RegistryError(f"{what}: copies need {SKOPEO}, not found", hint=service.INSTALL_HINT)
    info = registry.running()
    if info is None:
        raise RegistryError(f"{what}: the lab registry stopped", hint="`lab registry start`")
    target = image.at(info.address)
    argv = [
        binary,
        "--insecure-policy",  # no signature policy: local images into the host's own registry
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        source,
        f"docker://{target}",
    ]
    log.info("skopeo copy %s %s", source, target)
    env = {**os.environ, "TMPDIR": str(registry.directory)}  # unpacking beside the storage
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=COPY_TIMEOUT, check=False, env=env
        )
    except subprocess.TimeoutExpired as exc:
        raise RegistryError(f"{what}: the copy took more than {COPY_TIMEOUT:g}s") from exc
    if result.returncode == 0:
        return
    message = " ".join(result.stderr.split()) or f"skopeo exited {result.returncode}"
    registry_log = background.log_tail(registry.log_file, 5).lower()
    if "no space left" in message.lower() or "no space left" in registry_log:
        raise RegistryError(
            f"{what}: the disk is full: {message[-300:]}",
            hint=f"{SPACE_HINT} (the registry's storage is {registry.data})",
        )
    raise RegistryError(
        f"{what}: skopeo could not copy it into the lab registry: {message[-400:]}",
        hint=f"the registry's log is {registry.log_file}",
    )


# --- host engines -------------------------------------------------------------------


def _engine_answers(engine: str) -> str | None:
    """None when ``engine`` works here, else why not."""
    if shutil.which(engine) is None:
        return f"{engine} is not installed"
    if engine == "podman":
        return None  # no daemon: podman reads its storage itself
    try:
        result = subprocess.run(
            [engine, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=ENGINE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"{engine} is installed but its daemon did not answer in {ENGINE_TIMEOUT:g}s"
    if result.returncode != 0:
        return f"{engine} is installed but its daemon does not answer"
    return None


def find_engine(wanted: Engine | None = None) -> Engine:
    """The host's docker (when its daemon answers) or podman; ``wanted`` names one."""
    reasons = []
    for engine in (wanted,) if wanted else ENGINES:
        reason = _engine_answers(engine)
        if reason is None:
            return engine
        reasons.append(reason)
    raise RegistryError(
        "no image engine to push from: " + "; ".join(reasons),
        hint="install podman (`apt-get install podman`) or start docker; or save the image "
        "where it is (`docker save NAME -o FILE.tar`) and `lab image import FILE.tar`",
    )


def engine_image(engine: Engine, name: str) -> tuple[str, int]:
    """skopeo's source for ``name`` in the engine's store, and its size."""
    try:
        result = subprocess.run(
            [engine, "image", "inspect", "--format", "{{.Id}} {{.Size}}", name],
            capture_output=True,
            text=True,
            timeout=ENGINE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RegistryError(f"{engine} did not answer in {ENGINE_TIMEOUT:g}s") from exc
    fields = result.stdout.split()
    if result.returncode != 0 or len(fields) != 2:
        detail = " ".join(result.stderr.split())[-200:]
        raise RegistryError(
            f"{engine} has no image {name!r}" + (f": {detail}" if detail else ""),
            hint=f"`{engine} images` lists what it has",
        )
    image_id, size = fields[0], int(fields[1]) if fields[1].isdigit() else 0
    if engine == "docker":
        return f"docker-daemon:{image_id}", size  # sha256:... (an image ID)
    return f"containers-storage:{image_id.removeprefix('sha256:')}", size


# --- the verbs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Images:
    """The host's registry as ``lab image`` uses it: started on ``port`` when it is not
    running, kept in ``root``."""

    root: Path
    port: int = REGISTRY_PORT

    @property
    def registry(self) -> service.Registry:
        return service.local(self.root)

    def ensure(self) -> service.RegistryInfo:
        return service.ensure_local(self.root, self.port)

    def url(self) -> str:
        return self.ensure().url

    def import_archive(self, path: Path, name: str | None = None) -> list[ImageName]:
        """Every image of the archive (or the one, as ``name``) into the registry."""
        archive = inspect_archive(path)
        plan = import_plan(archive, name)
        check_space(self.registry.data, path.stat().st_size, str(path))
        done = []
        self.ensure()
        with service.lock(self.root, f"importing {path}"):
            for source, image in plan:
                skopeo_copy(source, image, self.registry, f"{path} as {image}")
                done.append(image)
        return done

    def push(
        self, source_name: str, name: str | None = None, engine: Engine | None = None
    ) -> tuple[ImageName, Engine]:
        """An image of the host's docker or podman into the registry."""
        image = parse_reference(name or source_name)
        chosen = find_engine(engine)
        source, size = engine_image(chosen, source_name)
        check_space(self.registry.data, size, f"{chosen} image {source_name}")
        self.ensure()
        with service.lock(self.root, f"pushing {source_name}"):
            skopeo_copy(source, image, self.registry, f"{chosen} image {source_name} as {image}")
        return image, chosen

    def rows(self) -> list[ImageRow]:
        return list_images(self.url())

    def disk_use(self) -> int:
        return dir_size(self.registry.data) if self.registry.data.exists() else 0

    def seed(self, archives: Sequence[tuple[str, Path]]) -> list[ImageName]:
        """The box's images (``busybox:latest``) imported where the registry lacks them."""
        url = self.url()
        added = []
        for reference, path in archives:
            image = parse_reference(reference)
            if not exists(url, image):
                added.extend(self.import_archive(path, reference))
        return added

    def remove(self, names: Sequence[str]) -> list[ImageName]:
        """The tags gone, and every blob no remaining tag needs freed."""
        images = [parse_reference(text) for text in names]
        registry = self.registry
        self.ensure()
        with service.lock(self.root, "removing images"):
            info = registry.running()
            if info is None:
                raise RegistryError("the lab registry stopped", hint="`lab registry start`")
            missing = [str(image) for image in images if not exists(info.url, image)]
            if missing:
                raise RegistryError(
                    f"no image {', '.join(missing)} in the lab registry",
                    hint="`lab image ls` lists what it holds",
                )
            registry.start(info.port, readonly=True)  # pulls go on; nothing is written
            try:
                for image in images:
                    _unlink_tag(registry.data, image)
                collect_garbage(registry)
            finally:
                registry.start(info.port)
        return images


def repositories_dir(data: Path) -> Path:
    """distribution's filesystem layout: ``docker/registry/v2/repositories/<repo>/``."""
    return data / "docker" / "registry" / "v2" / "repositories"


def _unlink_tag(data: Path, image: ImageName) -> None:
    """Remove the tag's link; the repository too once it has no tag left."""
    repository = repositories_dir(data) / image.repository
    tags_dir = repository / "_manifests" / "tags"
    shutil.rmtree(tags_dir / image.tag, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        if not any(tags_dir.iterdir()):
            shutil.rmtree(repository)


def collect_garbage(registry: service.Registry) -> str:
    """distribution's garbage collector over the storage, untagged manifests too."""
    binary = shutil.which(service.REGISTRY_BIN)
    if binary is None:
        raise RegistryError(f"{service.REGISTRY_BIN} not found", hint=service.INSTALL_HINT)
    result = subprocess.run(
        [binary, "garbage-collect", "--delete-untagged", str(registry.config_file)],
        capture_output=True,
        text=True,
        timeout=GC_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        tail = " ".join((result.stderr or result.stdout).split())[-300:]
        raise RegistryError(
            f"the registry's garbage collection failed: {tail}",
            hint="the tags are gone; their blobs stay until the next `lab image rm`",
        )
    return result.stdout
