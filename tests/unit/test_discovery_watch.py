"""Watches of the discovery service, driven through its request API with real threads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from provisioner.discovery.keyspace import Event
from provisioner.discovery.server import DiscoveryService, Reply, Watch

pytestmark = pytest.mark.unit

TOKEN = "0123456789abcdef0123456789abcdef"
FALLBACK = "http://127.0.0.1:1"


def _service(tmp_path: Path) -> DiscoveryService:
    service = DiscoveryService(tmp_path, watch_timeout=5.0)
    reply = service.handle("PUT", f"/{TOKEN}/_config/size", {"value": ["3"]}, None, FALLBACK)
    assert isinstance(reply, Reply)
    assert reply.status == 201
    return service


def _watch(service: DiscoveryService, wait_index: int | None) -> Watch:
    params = {"wait": ["true"], "recursive": ["true"]}
    if wait_index is not None:
        params["waitIndex"] = [str(wait_index)]
    answer = service.handle("GET", f"/{TOKEN}", params, None, FALLBACK)
    assert isinstance(answer, Watch)
    return answer


def _register(service: DiscoveryService, member: str) -> Reply:
    reply = service.handle(
        "PUT",
        f"/{TOKEN}/{member}",
        {"value": [f"{member}=http://10.0.0.1:2380"], "prevExist": ["false"]},
        None,
        FALLBACK,
    )
    assert isinstance(reply, Reply)
    return reply


def test_a_waiting_watch_wakes_on_a_new_member(tmp_path: Path) -> None:
    service = _service(tmp_path)
    watch = _watch(service, None)
    assert (watch.start_index, watch.since, watch.event) == (2, 3, None)
    results: list[Event | None] = []
    waiter = threading.Thread(
        target=lambda: results.append(service.wait(watch, time.monotonic() + 10))
    )
    waiter.start()
    time.sleep(0.2)
    assert waiter.is_alive()  # nothing happened yet: still waiting
    started = time.monotonic()
    assert _register(service, "m1").status == 201
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert time.monotonic() - started < 2
    event = results[0]
    assert event is not None
    assert (event.action, event.node.key) == ("create", f"/_etcd/registry/{TOKEN}/m1")


def test_a_past_wait_index_answers_from_history(tmp_path: Path) -> None:
    service = _service(tmp_path)
    _register(service, "m1")
    _register(service, "m2")
    watch = _watch(service, 4)  # 1: registry dir, 2: size, 3: m1, 4: m2
    assert watch.event is not None
    assert watch.event.node.key.endswith("/m2")
    assert service.wait(watch, time.monotonic()) is watch.event


def test_a_watch_ends_empty_at_its_deadline(tmp_path: Path) -> None:
    service = _service(tmp_path)
    watch = _watch(service, None)
    started = time.monotonic()
    assert service.wait(watch, started + 0.3) is None
    assert 0.25 < time.monotonic() - started < 3


def test_closing_the_service_releases_waiting_watches(tmp_path: Path) -> None:
    service = _service(tmp_path)
    watch = _watch(service, None)
    results: list[Event | None] = []
    waiter = threading.Thread(
        target=lambda: results.append(service.wait(watch, time.monotonic() + 30))
    )
    waiter.start()
    time.sleep(0.1)
    service.close()
    waiter.join(timeout=5)
    assert not waiter.is_alive()
    assert results == [None]


def test_hidden_writes_do_not_wake_a_recursive_watch(tmp_path: Path) -> None:
    service = _service(tmp_path)
    watch = _watch(service, None)
    service.handle("PUT", f"/{TOKEN}/_config/note", {"value": ["x"]}, None, FALLBACK)
    assert service.wait(watch, time.monotonic() + 0.3) is None
    _register(service, "m1")
    event = service.wait(watch, time.monotonic() + 5)
    assert event is not None
    assert event.node.key.endswith("/m1")


def test_unknown_token_and_bad_size(tmp_path: Path) -> None:
    service = DiscoveryService(tmp_path)
    missing = service.handle("GET", f"/{TOKEN}/_config/size", {}, None, FALLBACK)
    assert isinstance(missing, Reply)
    assert missing.status == 404
    assert b'"errorCode":100' in missing.body
    bad = service.handle("GET", "/new", {"size": ["three"]}, None, FALLBACK)
    assert isinstance(bad, Reply)
    assert bad.status == 400
    assert bad.body.startswith(b"invalid size 'three'")
    made = service.handle("GET", "/new", {"size": ["5"]}, "10.1.2.3:8087", FALLBACK)
    assert isinstance(made, Reply)
    assert made.status == 200
    assert made.body.decode().startswith("http://10.1.2.3:8087/")
