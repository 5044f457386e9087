"""clusterkit.Inventory: parsing, selection, JSON, errors, and Hosts from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import clusterkit as ck

TEXT = """\
defaults: {user: deploy, port: 2222}
hosts:
  gpu1:
    address: 10.0.0.11
    roles: [head, gpu]
    groups: [rack1]
    vars: {cuda: "12.4", shards: 2}
  gpu2: {address: 10.0.0.12, roles: [gpu], user: root}
  store: 10.0.0.20
  me: {local: true, roles: [download]}
groups:
  gpu: [gpu1, gpu2]
"""


@pytest.fixture
def inv() -> ck.Inventory:
    return ck.Inventory.parse(TEXT, source="cluster.yaml")


def test_parse_hosts_fields_groups_roles(inv: ck.Inventory) -> None:
    assert isinstance(inv, ck.Inventory)
    assert inv.source == "cluster.yaml"
    assert len(inv) == 4
    assert [h.name for h in inv.hosts] == ["gpu1", "gpu2", "store", "me"]
    assert [h.name for h in inv] == ["gpu1", "gpu2", "store", "me"]
    gpu1 = inv.find("gpu1")
    assert gpu1 is not None
    assert isinstance(gpu1, ck.InventoryHost) and isinstance(gpu1.spec, ck.HostSpec)
    assert (gpu1.spec.address, gpu1.spec.user, gpu1.spec.port) == ("10.0.0.11", "deploy", 2222)
    assert gpu1.roles == ["head", "gpu"]
    assert gpu1.groups == ["gpu", "rack1"]
    assert gpu1.extra == {"vars": {"cuda": "12.4", "shards": 2}}
    gpu2 = inv.find("gpu2")
    assert gpu2 is not None and gpu2.spec.user == "root" and gpu2.extra == {}
    store = inv.find("store")
    assert store is not None and store.spec.address == "10.0.0.20"
    me = inv.find("me")
    assert me is not None and me.spec.local
    assert inv.find("nope") is None
    assert "gpu1" in inv and "nope" not in inv
    assert inv.groups() == ["gpu", "rack1"]


def test_select(inv: ck.Inventory) -> None:
    def names(selector: str) -> list[str]:
        return [h.name for h in inv.select(selector)]

    assert names("all") == ["gpu1", "gpu2", "store", "me"]
    assert names("gpu") == ["gpu1", "gpu2"]
    assert names("role:head") == ["gpu1"]
    assert names("store,rack1,gpu1") == ["gpu1", "store"]  # inventory order, no repeats
    with pytest.raises(ck.Error) as e:
        inv.select("nosuchgroup")
    assert e.value.code == "unknown_host_or_group"
    assert "nosuchgroup" in e.value.message


def test_to_json_round_trips(inv: ck.Inventory) -> None:
    data = inv.to_json()
    assert isinstance(data, dict)
    assert list(data["hosts"]) == ["gpu1", "gpu2", "store", "me"]
    again = ck.Inventory.parse(json.dumps(data), source="again.json")
    assert again.to_json() == data
    for a, b in zip(inv.hosts, again.hosts):
        assert a.spec == b.spec
        assert (a.groups, a.roles, a.extra) == (b.groups, b.roles, b.extra)


def test_load_from_file_and_errors_name_file_and_line(tmp_path: Path) -> None:
    good = tmp_path / "inv.yaml"
    good.write_text(TEXT)
    assert [h.name for h in ck.Inventory.load(good).hosts] == ["gpu1", "gpu2", "store", "me"]
    assert ck.Inventory.load(str(good)).source.endswith("inv.yaml")

    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts:\n  a: {address: 10.0.0.1}\n  b: {adress: 10.0.0.2}\n")
    with pytest.raises(ck.Error) as e:
        ck.Inventory.load(bad)
    assert e.value.code == "inventory_invalid"
    assert "bad.yaml:3:" in e.value.message  # file and line
    assert "address" in e.value.message  # the suggestion

    with pytest.raises(ck.Error) as e:
        ck.Inventory.load(tmp_path / "missing.yaml")
    assert e.value.code == "inventory_invalid"
    assert "missing.yaml" in e.value.message


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("hosts:\n  a: {port: lots}\n", 2, "port"),
        ("hosts:\n  a: {}\n  a: {}\n", 3, "duplicate"),
        ("hosts:\n  a: {roles: [chef]}\n", 2, "role"),
        ("hosts:\n  a: {}\ngroups:\n  g: [a, zz]\n", 4, "zz"),
        ("hots:\n  a: {}\n", 1, "hots"),
    ],
)
def test_invalid_inventory_raises_with_line_number(text: str, line: int, words: str) -> None:
    with pytest.raises(ck.Error) as e:
        ck.Inventory.parse(text, source="inv.yaml")
    assert e.value.code == "inventory_invalid"
    assert f"inv.yaml:{line}:" in str(e.value)
    assert words in str(e.value)


def test_inventory_hosts_become_hosts(inv: ck.Inventory) -> None:
    me = inv.host("me")
    assert isinstance(me, ck.Host)
    assert me is inv.host("me")  # one Host (one connection) per name
    assert me.spec == inv.find("me").spec  # type: ignore[union-attr]
    r = me.run(["echo", "from the inventory"])
    assert r.stdout == "from the inventory\n"
    gpus = inv.hosts_for("gpu")
    assert [h.name for h in gpus] == ["gpu1", "gpu2"]
    assert all(isinstance(h, ck.Host) for h in gpus)
    assert gpus[0].spec.address == "10.0.0.11"
    assert [h.name for h in inv.hosts_for()] == ["gpu1", "gpu2", "store", "me"]
    with pytest.raises(ck.Error) as e:
        inv.host("nope")
    assert e.value.code == "unknown_host_or_group"
    outcomes = ck.run_on_hosts(inv.hosts_for("role:download"), ["true"])
    assert [o.host for o in outcomes] == ["me"] and outcomes[0].ok


def test_empty_and_copied_inventories(inv: ck.Inventory) -> None:
    assert len(ck.Inventory()) == 0
    copy = ck.Inventory(inv)
    assert [h.name for h in copy.hosts] == [h.name for h in inv.hosts]
