"""Image names: docker's reference grammar, and where a name lives in the lab registry.

The grammar is distribution's (``reference/regexp.go``)::

    reference       := name [ ":" tag ]
    name            := [domain '/'] path-component ['/' path-component]*
    domain          := domain-component ['.' domain-component]* [':' port-number]
    path-component  := alpha-numeric [separator alpha-numeric]*
    alpha-numeric   := /[a-z0-9]+/
    separator       := /[_.]|__|[-]*/
    tag             := /[\\w][\\w.-]{0,127}/

A first component is a registry's domain when it holds a ``.`` or a ``:`` or is
``localhost``, as docker decides. The lab registry stores every image under its
Docker Hub path, so that docker's mirror lookup finds it: Docker Hub names are
looked up on a mirror as ``library/NAME`` for official images (``mongo:7`` is
``library/mongo:7``) and as they are for the rest (``bitnami/redis``). A
registry part of the name is dropped (``localhost/app``, podman's name for a
local image, is ``app``; ``quay.io/org/app`` is ``org/app``). Digests are not
names here: a tag is what a unit pulls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from provisioner.errors import RegistryError

DEFAULT_TAG = "latest"
OFFICIAL = "library"
MAX_NAME = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[_.]|__|[-]*)"
_PATH_COMPONENT = re.compile(rf"^{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*$")
_DOMAIN = re.compile(
    r"^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?$"
)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_HINT = (
    "a name is lowercase letters, digits and . _ - separators, with '/' between parts, "
    "and an optional :TAG (letters, digits, . _ -, up to 128), e.g. mongo:7 or myorg/app:1.2"
)


@dataclass(frozen=True)
class ImageName:
    """An image in the lab registry: its repository path there and its tag."""

    repository: str  # "library/mongo", "myorg/app"
    tag: str

    @property
    def familiar(self) -> str:
        """The name as docker shows and a unit pulls it: ``mongo:7``, ``myorg/app:1``."""
        return f"{self.repository.removeprefix(OFFICIAL + '/')}:{self.tag}"

    def at(self, address: str) -> str:
        """The explicit name on a registry at ``address`` (``HOST:PORT``)."""
        return f"{address}/{self.repository}:{self.tag}"

    def __str__(self) -> str:
        return self.familiar


def split_domain(name: str) -> tuple[str | None, str]:
    """``(domain, path)`` of a name as docker splits it (no normalisation)."""
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return None, name


def parse_reference(text: str, *, what: str = "image name") -> ImageName:
    """``NAME[:TAG]`` as stored in the lab registry; a RegistryError naming ``text``."""

    def bad(reason: str) -> RegistryError:
        return RegistryError(f"{what} {text!r} is not a valid reference: {reason}", hint=_HINT)

    if not text or text != text.strip():
        raise bad("empty or surrounded by spaces")
    if "@" in text:
        raise RegistryError(
            f"{what} {text!r}: digests are not names in the lab registry",
            hint="name a tag instead, e.g. mongo:7",
        )
    # a ':' after the last '/' starts the tag (one before it is a domain's port)
    slash = text.rfind("/")
    colon = text.rfind(":")
    name, tag = (text[:colon], text[colon + 1 :]) if colon > slash else (text, DEFAULT_TAG)
    if not _TAG.match(tag):
        raise bad(f"tag {tag!r} is not a valid tag")
    domain, path = split_domain(name)
    if domain is not None and not _DOMAIN.match(domain):
        raise bad(f"{domain!r} is not a registry host")
    components = path.split("/")
    for component in components:
        if not _PATH_COMPONENT.match(component):
            reason = (
                "uppercase letters are not allowed in names"
                if component.lower() != component and _PATH_COMPONENT.match(component.lower())
                else f"{component!r} is not a valid name component"
            )
            raise bad(reason)
    if len(name) > MAX_NAME:
        raise bad(f"the name is longer than {MAX_NAME} characters")
    if len(components) == 1:
        components = [OFFICIAL, *components]
    return ImageName("/".join(components), tag)
