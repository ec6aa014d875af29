"""Which guest units get enabled and which command wrappers get written."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from provisioner.box import guest
from provisioner.box.recipe import GuestInstall

pytestmark = pytest.mark.unit

SERVICE = "[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/true\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SERVICE, False),
        (SERVICE + "\n[Install]\nWantedBy=multi-user.target\n", True),
        (SERVICE + "\n[Install]\n# nothing here\n", False),
        (SERVICE + "\n[Install]\n\n[X-Fleet]\nGlobal=true\n", False),
        ("[Install]\nRequiredBy=ssh.service\n", True),
    ],
)
def test_has_install_section(text: str, expected: bool) -> None:
    assert guest.has_install_section(text) is expected


def test_templates_need_a_default_instance() -> None:
    install = SERVICE + "[Install]\nWantedBy=multi-user.target\n"
    assert not guest.can_enable("user-cloudinit@.service", install)
    assert guest.can_enable("user-cloudinit@.service", install + "DefaultInstance=x\n")
    assert guest.can_enable("user-cloudinit@var-lib-x.path", install)
    assert not guest.can_enable("a.service", SERVICE)


def make_source(root: Path) -> Path:
    (root / "cloudinit" / "units").mkdir(parents=True)
    (root / "cloudinit" / "main.py").write_text("def main() -> int:\n    return 0\n")
    (root / "cloudinit" / "units" / "user-configdrive.service").write_text(
        SERVICE + "[Install]\nWantedBy=multi-user.target\n"
    )
    (root / "cloudinit" / "units" / "media-configdrive.mount").write_text("[Mount]\nWhat=x\n")
    (root / "cloudinit" / "units" / "README.md").write_text("not a unit\n")
    (root / "fleet" / "units").mkdir(parents=True)
    (root / "fleet" / "__init__.py").write_text("")
    (root / "fleet" / "units" / "fleet.service").write_text(
        SERVICE + "[Install]\nWantedBy=multi-user.target\n"
    )
    return root


def test_plan_is_generic_over_what_exists(tmp_path: Path) -> None:
    source = make_source(tmp_path / "guest")
    install = GuestInstall(
        commands=(
            ("coreos-cloudinit", "provisioner.guest.cloudinit.main:main"),
            ("fleetd", "provisioner.guest.fleet.fleetd:main"),
            ("fleetpkg", "provisioner.guest.fleet:main"),
        ),
        leave_disabled=("fleet.service",),
    )
    plan = guest.plan(source, install)
    assert [c for c, _ in plan.commands] == ["coreos-cloudinit", "fleetpkg"]
    assert [c for c, _ in plan.missing_commands] == ["fleetd"]
    units = {u.name: u.enable for u in plan.units}
    assert units == {
        "media-configdrive.mount": False,
        "user-configdrive.service": True,
        "fleet.service": False,  # has [Install] but the recipe leaves it to cloud-config
    }


def test_module_file_only_inside_the_guest_package(tmp_path: Path) -> None:
    source = make_source(tmp_path / "guest")
    assert guest.module_file(source, "provisioner.guest.cloudinit.main") == (
        source / "cloudinit" / "main.py"
    )
    assert guest.module_file(source, "provisioner.guest.fleet") == source / "fleet" / "__init__.py"
    assert guest.module_file(source, "os.path") is None


def test_wrapper_script_is_python_that_calls_the_entry_point() -> None:
    text = guest.wrapper_script("fleetctl", "provisioner.guest.fleet.fleetctl:main")
    assert text.startswith("#!/usr/bin/python3\n")
    tree = ast.parse(text)
    imports = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert [(i.module, [a.name for a in i.names]) for i in imports] == [
        ("provisioner.guest.fleet.fleetctl", ["main"])
    ]
    assert "sys.exit(main())" in text


def test_shipped_guest_units_are_found() -> None:
    source = guest.guest_source()
    plan = guest.plan(source, GuestInstall())
    shipped = sorted(
        p.name for p in source.glob("*/units/*") if p.name.endswith(guest.UNIT_SUFFIXES)
    )
    assert sorted(u.name for u in plan.units) == shipped


def test_drop_ins_are_planned_beside_the_units(tmp_path: Path) -> None:
    source = make_source(tmp_path / "guest")
    folder = source / "fleet" / "units" / "docker.service.d"
    folder.mkdir()
    (folder / "40-x.conf").write_text("[Unit]\nAfter=fleet.service\n")
    (folder / "notes.txt").write_text("not a drop-in\n")
    plan = guest.plan(source, GuestInstall())
    assert plan.drop_ins == (("docker.service.d/40-x.conf", folder / "40-x.conf"),)
    assert "docker.service.d" not in {u.name for u in plan.units}


def test_the_shipped_docker_drop_in_orders_docker_after_flanneld() -> None:
    plan = guest.plan(guest.guest_source(), GuestInstall())
    drop_ins = dict(plan.drop_ins)
    text = drop_ins["docker.service.d/40-flannel.conf"].read_text()
    assert "After=flanneld.service" in text
    assert "EnvironmentFile=-/run/flannel/flannel_docker_opts.env" in text
    assert "$DOCKER_OPT_BIP $DOCKER_OPT_MTU $DOCKER_OPT_IPMASQ" in text


def test_udev_rules_are_planned_and_installed(tmp_path: Path) -> None:
    source = make_source(tmp_path / "guest")
    (source / "cloudinit" / "udev").mkdir()
    rule = source / "cloudinit" / "udev" / "90-configdrive.rules"
    rule.write_text('SUBSYSTEM=="block", ENV{SYSTEMD_WANTS}+="user-configdrive.service"\n')
    (source / "cloudinit" / "udev" / "notes.txt").write_text("not a rule\n")
    assert guest.plan(source, GuestInstall()).udev_rules == (rule,)


def test_the_shipped_config_drive_rule_starts_the_agent_unit() -> None:
    source = guest.guest_source()
    rules = guest.plan(source, GuestInstall()).udev_rules
    assert [r.name for r in rules] == ["90-configdrive.rules"]
    text = rules[0].read_text()
    assert 'ENV{ID_FS_LABEL}=="config-2"' in text
    wanted = text.split('ENV{SYSTEMD_WANTS}+="', 1)[1].split('"', 1)[0].split()
    assert wanted == ["lab-configdrive-keys.service", "coreos-cloudinit-configdrive.service"]
    for name in wanted:
        unit = (source / "cloudinit" / "units" / name).read_text()
        assert "udev-settle" not in unit
    # side by side: the early keys step must not hold up the agent's start
    keys = (source / "cloudinit" / "units" / wanted[0]).read_text()
    assert "Before=" not in keys
