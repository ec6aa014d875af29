"""The plain-Vagrant hooks' decisions: a spent token, a fresh one swapped in, refusals."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from provisioner.config import Overrides, build_config
from provisioner.errors import LabError
from provisioner.lifecycle.vagranthook import _require_rendered, fresh_discovery, token_spent
from provisioner.render import sha256_text
from provisioner.state import SPENT_DISCOVERY, DiscoveryRecord, LabState, StateFile, save_state

OLD = "http://192.168.58.1:8087/v2/keys/_etcd/registry/" + "a" * 32


def lab(tmp_path: Path, **raw: object):  # type: ignore[no-untyped-def]
    return build_config(
        {"name": "hooks", "subnet": "192.168.58.0/24", "num_instances": 2, **raw},
        tmp_path,
        Overrides(),
    )


def write_user_data(tmp_path: Path, edited: bool) -> dict[str, str]:
    record = {}
    for name in ("core-01", "core-02"):
        path = tmp_path / "nodes" / name / "user-data"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = f"#cloud-config\ncoreos:\n  etcd2:\n    discovery: {OLD}\n"
        record[f"nodes/{name}/user-data"] = sha256_text(text)
        if edited and name == "core-02":
            text += "write_files:\n  - path: /etc/mine\n    content: mine\n"
        path.write_text(text)
    return record


def test_a_token_is_spent_once_nodes_booted_from_it() -> None:
    record = DiscoveryRecord("local", OLD, 3)
    assert not token_spent(LabState(discovery=record, phases=("render", "drives")))
    assert token_spent(LabState(discovery=record, phases=("render", "boot")))
    assert token_spent(LabState(discovery=record, extra={SPENT_DISCOVERY: OLD}))
    assert not token_spent(LabState(discovery=None, phases=("boot",)))


def test_a_new_cluster_gets_a_fresh_token_in_every_user_data(tmp_path: Path) -> None:
    config = lab(tmp_path)
    record = write_user_data(tmp_path, edited=True)
    save_state(
        config.state_dir,
        LabState(
            name="hooks",
            discovery=DiscoveryRecord("local", OLD, 2),
            rendered=record,
            phases=("render", "drives", "boot", "cluster"),
            host_keys={"core-01": ["ED25519 SHA256:x"]},
            extra={SPENT_DISCOVERY: OLD},
        ),
    )
    (config.state_dir / "known_hosts").write_text("192.168.58.101 ssh-ed25519 AAAA\n")
    book = StateFile(config.state_dir)
    fresh = fresh_discovery(config, book)
    assert fresh is not None
    assert fresh != OLD
    assert fresh.startswith("http://192.168.58.1:8087/v2/keys/_etcd/registry/")
    for name in ("core-01", "core-02"):
        text = (tmp_path / "nodes" / name / "user-data").read_text()
        assert OLD not in text
        assert fresh in text
    assert "/etc/mine" in (tmp_path / "nodes" / "core-02" / "user-data").read_text()
    state = book.state
    assert state.discovery is not None
    assert state.discovery.url == fresh
    assert state.phases == ("render", "drives")
    assert state.host_keys == {}
    assert SPENT_DISCOVERY not in state.extra
    assert not (config.state_dir / "known_hosts").exists()
    # lab's own file is still lab's; the one the user edited stays the user's
    one = (tmp_path / "nodes/core-01/user-data").read_text()
    assert state.rendered["nodes/core-01/user-data"] == sha256_text(one)
    assert state.rendered["nodes/core-02/user-data"] == record["nodes/core-02/user-data"]
    assert fresh_discovery(config, book) is None  # not spent any more


def test_a_spent_url_of_the_users_own_is_refused(tmp_path: Path) -> None:
    url = "https://discovery.etcd.io/" + "b" * 32
    config = lab(tmp_path, discovery=url)
    save_state(
        config.state_dir,
        LabState(name="hooks", discovery=DiscoveryRecord(url, url, 2), phases=("render", "boot")),
    )
    with pytest.raises(LabError, match="bootstrapped a cluster already") as info:
        fresh_discovery(config, StateFile(config.state_dir))
    assert "--discovery URL" in (info.value.hint or "")


def test_vagrant_up_needs_a_render_lab_knows_of(tmp_path: Path) -> None:
    config = lab(tmp_path)
    with pytest.raises(LabError, match="no record of rendering") as info:
        _require_rendered(config, LabState(), 2)
    assert f"lab -C {tmp_path} render" in (info.value.hint or "")
    state = LabState(name="hooks", phases=("render",))
    with pytest.raises(LabError, match="asks for 3 nodes"):
        _require_rendered(config, state, 3)
    with pytest.raises(LabError, match="no rendered user-data for core-01, core-02"):
        _require_rendered(config, state, 2)
    write_user_data(tmp_path, edited=False)
    assert [n.name for n in _require_rendered(config, replace(state), 1)] == ["core-01"]
