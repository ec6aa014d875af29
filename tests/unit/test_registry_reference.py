"""Image names: docker's reference grammar, and the Docker Hub path each is stored under."""

from __future__ import annotations

import pytest

from provisioner.errors import RegistryError
from provisioner.registry.reference import ImageName, parse_reference


@pytest.mark.parametrize(
    ("text", "repository", "tag", "familiar"),
    [
        ("mongo", "library/mongo", "latest", "mongo:latest"),
        ("mongo:7", "library/mongo", "7", "mongo:7"),
        ("library/mongo:7", "library/mongo", "7", "mongo:7"),
        ("docker.io/library/mongo:7", "library/mongo", "7", "mongo:7"),
        ("docker.io/mongo", "library/mongo", "latest", "mongo:latest"),
        ("bitnami/redis:7.2-debian", "bitnami/redis", "7.2-debian", "bitnami/redis:7.2-debian"),
        ("localhost/app:2", "library/app", "2", "app:2"),  # podman's name for a local image
        ("localhost:5000/team/app", "team/app", "latest", "team/app:latest"),
        ("quay.io/org/app:v1.0_rc", "org/app", "v1.0_rc", "org/app:v1.0_rc"),
        ("a.b/c__d-e.f/g", "c__d-e.f/g", "latest", "c__d-e.f/g:latest"),
        ("my-app:TAG_1", "library/my-app", "TAG_1", "my-app:TAG_1"),
    ],
)
def test_names_are_stored_under_their_docker_hub_path(
    text: str, repository: str, tag: str, familiar: str
) -> None:
    image = parse_reference(text)
    assert image == ImageName(repository, tag)
    assert image.familiar == familiar
    assert image.at("192.168.58.1:5000") == f"192.168.58.1:5000/{repository}:{tag}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (" mongo", "surrounded by spaces"),
        ("Mongo:7", "uppercase letters are not allowed"),
        ("mongo:", "tag '' is not a valid tag"),
        ("mongo:-7", "tag '-7' is not a valid tag"),
        ("mongo:" + "x" * 129, "is not a valid tag"),
        ("mon go", "'mon go' is not a valid name component"),
        ("a//b", "'' is not a valid name component"),
        ("-mongo", "not a valid name component"),
        ("mongo_", "not a valid name component"),
        ("a..b", "not a valid name component"),
        ("x" * 256, "longer than 255"),
        ("-bad.io/app", "'-bad.io' is not a registry host"),
    ],
)
def test_bad_names_are_refused_with_the_name_and_the_grammar(text: str, reason: str) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_reference(text)
    assert f"image name {text!r} is not a valid reference" in caught.value.message
    assert reason in caught.value.message
    assert caught.value.hint is not None
    assert "mongo:7" in caught.value.hint


def test_digests_are_not_names_here() -> None:
    with pytest.raises(RegistryError, match="digests are not names"):
        parse_reference("mongo@sha256:" + "0" * 64)
