"""`envoyage check`: the sentences for what is wrong (pure parts; the real resolvers,
tunnel and Envoys are in integration/test_split_dns.py)."""

import dataclasses

from envoyage.cli import check
from envoyage.config import Config
from envoyage.status import EdgeLinkStatus, StatusReport, TunnelStatus

CFG = Config(
    topology="a",
    dns_enabled=True,
    dns_answer_address="192.168.1.10",
    dns_public_resolver="9.9.9.9",
    edge_public_address="203.0.113.5",
)
SERVICES = [
    {"name": "web", "domains": ["web.example.org"], "access": "public", "problems": []},
    {"name": "apps", "domains": ["*.apps.example.org"], "access": "public", "problems": []},
]


def fake_resolver(table):
    def resolve(server, name, timeout=2.0):
        return table[(server, name)]

    return resolve


def test_check_dns_passes_when_the_lan_gets_home_and_the_internet_gets_the_vps(monkeypatch):
    monkeypatch.setattr(
        check,
        "resolve",
        fake_resolver(
            {
                ("192.168.1.10", "x.apps.example.org"): (["192.168.1.10"], None, False),
                ("9.9.9.9", "x.apps.example.org"): (["203.0.113.5"], None, True),
            }
        ),
    )
    r = check.check_dns(CFG, SERVICES, "x.apps.example.org")
    assert r["ok"] and r["service"] == "apps" and r["internet"]["dnssec"]


def test_check_dns_names_a_lan_answer_through_the_vps_and_a_missing_public_record(monkeypatch):
    monkeypatch.setattr(
        check,
        "resolve",
        fake_resolver(
            {
                ("192.168.1.10", "web.example.org"): (["203.0.113.5"], None, False),
                ("9.9.9.9", "web.example.org"): ([], "9.9.9.9 answered NXDOMAIN", False),
            }
        ),
    )
    r = check.check_dns(CFG, SERVICES, "web.example.org")
    assert not r["ok"]
    assert r["problems"][0].startswith(
        "LAN clients get 203.0.113.5 for web.example.org, not this home's address "
        "192.168.1.10: their traffic goes through the VPS"
    )
    assert "the internet cannot resolve web.example.org (9.9.9.9 answered NXDOMAIN)" in r["problems"][1]


def test_check_tunnel_names_the_tunnel_and_the_link():
    tunnel = TunnelStatus(
        interface="envoyage0", handshake_age=12, rtt_ms=20.5, endpoint="203.0.113.5:51820", rx_bytes=1, tx_bytes=2
    )
    up = StatusReport(tunnel=tunnel, edge=EdgeLinkStatus(connected=True, edge_id="vps", in_sync=True, rtt_ms=20.5))
    r = check.check_tunnel(up)
    assert r["ok"] and r["edge"] == {"connected": True, "edge_id": "vps", "in_sync": True, "rtt_ms": 20.5}
    assert r["tunnel"] == {
        "interface": "envoyage0",
        "handshake_age": 12,
        "rtt_ms": 20.5,
        "endpoint": "203.0.113.5:51820",
        "rx_bytes": 1,
        "tx_bytes": 2,
    }
    down = StatusReport(
        tunnel=dataclasses.replace(tunnel, problem="no handshake with the VPS yet (check ...)"),
        edge=EdgeLinkStatus(connected=False),
    )
    r = check.check_tunnel(down)
    assert r["problems"] == [
        "the tunnel is down: no handshake with the VPS yet (check ...)",
        "the edge link is down: no edge is connected (is `envoyage edge` running on the VPS, "
        "and does it have the right secret?)",
    ]
    assert not check.check_tunnel(StatusReport())["ok"]
