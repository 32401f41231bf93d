"""The address filters the roles use to check an inventory and plan the tunnel."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.envoyage.core.plugins.filter.network import FilterModule

F = FilterModule().filters()
KEY = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="


def test_the_plan_gives_the_vps_the_first_address_and_home_the_second():
    plan = F["tunnel_plan"]("10.88.0.0/24")
    assert (plan["vps"], plan["home"], plan["prefixlen"]) == ("10.88.0.1", "10.88.0.2", 24)


def test_a_bad_prefix_is_an_error_naming_the_value():
    with pytest.raises(AnsibleFilterError, match="10.88.0/24"):
        F["tunnel_plan"]("10.88.0/24")
    assert "too small" in F["prefix_problem"]("10.88.0.0/30")
    assert F["prefix_problem"]("10.88.0.0/24") == ""


@pytest.mark.parametrize(
    "value,ok", [("192.168.1.2", True), ("fd00::2", True), ("192.168.1.300", False), ("home.lan", False), ("", False)]
)
def test_address_problem(value, ok):
    assert (F["address_problem"](value) == "") is ok


def test_cidr_problem_names_each_bad_entry():
    assert F["cidr_problem"](["10.0.0.0/8", "192.168.1.0/24"]) == ""
    problem = F["cidr_problem"](["10.0.0.0/8", "192.168.1/33", "lan"])
    assert "192.168.1/33" in problem and "'lan'" in problem and "10.0.0.0/8" not in problem


@pytest.mark.parametrize(
    "value,ok",
    [
        ("vps.example.org:51820", True),
        ("[2001:db8::1]:51820", True),
        ("203.0.113.1", False),
        ("203.0.113.1:0", False),
        (":51820", False),
    ],
)
def test_endpoint_problem(value, ok):
    assert (F["endpoint_problem"](value) == "") is ok


def test_tunnel_configuration_has_no_private_key_and_the_right_peer():
    home = F["wireguard_conf"](KEY, "home", "10.88.0.0/24", endpoint="203.0.113.1:51820")
    vps = F["wireguard_conf"](KEY, "vps", "10.88.0.0/24", listen_port=51821)
    for conf in (home, vps):
        assert "PrivateKey" not in conf and f"PublicKey = {KEY}" in conf
    assert "Endpoint = 203.0.113.1:51820" in home and "PersistentKeepalive = 25" in home
    assert "ListenPort = 51821" in vps and "AllowedIPs = 10.88.0.2/32" in vps
    with pytest.raises(AnsibleFilterError, match="side"):
        F["wireguard_conf"](KEY, "lan", "10.88.0.0/24")
    with pytest.raises(AnsibleFilterError, match="HOST:PORT"):
        F["wireguard_conf"](KEY, "home", "10.88.0.0/24", endpoint="nowhere")


def test_overlap_problem_names_lan_entries_inside_the_tunnel_prefix():
    assert F["overlap_problem"](["192.168.1.0/24"], "10.88.0.0/24") == ""
    problem = F["overlap_problem"](["10.0.0.0/8", "192.168.1.0/24"], "10.88.0.0/24")
    assert problem.startswith("10.0.0.0/8 overlaps the tunnel prefix 10.88.0.0/24")
    assert F["overlap_problem"](["fd00::/8"], "10.88.0.0/24") == ""  # other family


def test_default_lan_is_the_default_route_networks_from_the_facts():
    facts = {
        "default_ipv4": {"address": "192.168.1.10", "prefix": "24", "netmask": "255.255.255.0"},
        "default_ipv6": {"address": "2001:db8:1::10", "prefix": "64"},
    }
    assert F["default_lan"](facts) == ["192.168.1.0/24", "2001:db8:1::/64"]
    assert F["default_lan"]({}) == []
    assert F["default_lan"]({"default_ipv6": {"address": "fe80::1", "prefix": "64"}}) == []
