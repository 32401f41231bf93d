"""Who counts as the LAN for vpn-only (pure): never the tunnel prefix, never one of home's
Docker networks, loopback only when listed, and home's default-route network by default."""

from envoyage.networks import DockerNetwork, default_lan_networks, local_docker_networks, vpn_only_networks

BRIDGE = DockerNetwork("bridge", "172.17.0.0/16")  # dockerd names no gateway for the default bridge
HOME_ADDRESSES = ("127.0.0.1", "::1", "192.168.1.10", "172.17.0.1", "172.20.0.1")


def test_the_old_private_range_defaults_are_refused_where_they_cover_the_tunnel_or_docker():
    nets, problems = vpn_only_networks(
        ("10.0.0.0/8", "172.16.0.0/12", "192.168.1.0/24"),
        (),
        tunnel_prefix="10.88.0.0/24",
        docker_networks=local_docker_networks([BRIDGE], HOME_ADDRESSES),
    )
    assert nets == ("192.168.1.0/24",)
    assert any(p.startswith("lan_cidrs: 10.0.0.0/8 overlaps the tunnel prefix 10.88.0.0/24") for p in problems)
    assert any(
        p.startswith("lan_cidrs: 172.16.0.0/12 overlaps the Docker network 'bridge' (172.17.0.0/16") for p in problems
    )


def test_a_vpn_entry_inside_the_tunnel_prefix_is_refused_too():
    nets, problems = vpn_only_networks(
        ("192.168.1.0/24",), ("10.88.0.128/25", "10.99.0.0/24"), tunnel_prefix="10.88.0.0/24"
    )
    assert nets == ("192.168.1.0/24", "10.99.0.0/24")
    assert problems and problems[0].startswith("vpn_cidrs: 10.88.0.128/25 overlaps the tunnel prefix")


def test_the_default_is_home_s_default_route_network_without_loopback_or_link_local():
    default = default_lan_networks(
        ["eth0"],
        [
            ("lo", "127.0.0.1", 8),
            ("eth0", "192.168.1.10", 24),
            ("eth0", "fe80::1", 64),
            ("eth0", "2001:db8:1::10", 64),
            ("docker0", "172.17.0.1", 16),
        ],
    )
    assert default == ["192.168.1.0/24", "2001:db8:1::/64"]
    nets, problems = vpn_only_networks((), (), default_lan=default, tunnel_prefix="10.88.0.0/24")
    assert nets == ("192.168.1.0/24", "2001:db8:1::/64") and problems == []
    assert not any(n.startswith("127.") for n in nets)


def test_a_default_route_network_that_overlaps_docker_is_refused_and_named():
    nets, problems = vpn_only_networks((), (), default_lan=("172.16.0.0/12",), docker_networks=[BRIDGE])
    assert nets == ()
    assert problems[0].startswith("home's default-route network: 172.16.0.0/12 overlaps the Docker network")


def test_no_default_route_means_no_lan_and_says_so():
    nets, problems = vpn_only_networks((), (), default_lan=())
    assert nets == () and "lan_cidrs is not set" in problems[0]


def test_loopback_only_when_listed():
    nets, _ = vpn_only_networks(("127.0.0.0/8", "::1/128"), ())
    assert nets == ("127.0.0.0/8", "::1/128")


def test_only_docker_networks_whose_gateway_is_on_home_count():
    # a containerised home sits on another host's Docker network: that network is its LAN
    outer = DockerNetwork("demo", "198.18.80.0/24", "198.18.80.1")
    mine = DockerNetwork("apps", "172.20.0.0/16", "172.20.0.1")
    assert local_docker_networks([outer, mine, BRIDGE], HOME_ADDRESSES) == [mine, BRIDGE]
    assert local_docker_networks([DockerNetwork("odd", "not-a-subnet")], HOME_ADDRESSES) == []


def test_when_home_s_addresses_are_unknown_every_docker_network_counts():
    outer = DockerNetwork("demo", "198.18.80.0/24", "198.18.80.1")
    assert local_docker_networks([outer], ()) == [outer]
