"""Split-horizon DNS, pure parts and the controller with a recording unbound-control
(the real Unbound is in integration/test_split_dns.py)."""

import os
import stat

import pytest

from envoyage.dns.controller import DnsController
from envoyage.dns.unbound import ResolverSettings, UnboundError, render_conf
from envoyage.dns.zones import Zone, desired_zones, diff, parse_include, render_include


def test_one_zone_per_domain_and_a_redirect_zone_per_wildcard():
    zones = desired_zones(
        ["Web.Example.org", "*.apps.example.org", "apps.example.org", "xn--bcher-kva.example"],
        "192.168.1.10",
        "fd00::10",
        ttl=30,
    )
    assert zones["web.example.org."] == Zone(
        "transparent", ("web.example.org. 30 IN A 192.168.1.10", "web.example.org. 30 IN AAAA fd00::10")
    )
    assert zones["apps.example.org."].kind == "redirect"  # the wildcard's base and everything under it
    assert "xn--bcher-kva.example." in zones
    with pytest.raises(ValueError):
        desired_zones(["a.example.org"], "not-an-address")


def test_the_include_file_round_trips_and_a_diff_touches_only_what_changed():
    a = desired_zones(["a.example.org", "b.example.org", "*.c.example.org"], "10.0.0.1")
    text = render_include(a)
    assert text.splitlines()[2] == "server:"
    assert parse_include(text) == a
    b = desired_zones(["a.example.org", "*.b.example.org", "d.example.org"], "10.0.0.1")
    add, remove = diff(a, b)
    assert set(add) == {"b.example.org.", "d.example.org."}  # b changed kind: removed and added again
    assert remove == ["b.example.org.", "c.example.org."]
    assert diff(b, b) == ({}, [])


def test_the_resolver_only_answers_the_lan_validates_and_keeps_its_control_on_loopback():
    conf = render_conf(
        ResolverSettings(
            listen=("192.168.1.10",),
            include_file="/var/lib/envoyage-dns/zones.conf",
            access=("192.168.1.0/24",),
            upstreams=("9.9.9.9", "149.112.112.112"),
        )
    )
    assert "access-control: 0.0.0.0/0 refuse" in conf and "access-control: ::/0 refuse" in conf
    assert "access-control: 192.168.1.0/24 allow" in conf
    assert (
        'module-config: "validator iterator"' in conf and 'auto-trust-anchor-file: "/var/lib/unbound/root.key"' in conf
    )
    assert 'control-interface: "/run/unbound.ctl"' in conf and "control-use-cert: no" in conf
    tls = render_conf(
        ResolverSettings(listen=("192.168.1.10",), include_file="z", access=("192.168.1.0/24",), control_socket=None)
    )
    assert "control-interface: 127.0.0.1" in tls and 'control-key-file: "/etc/unbound/unbound_control.key"' in tls
    assert 'include: "/var/lib/envoyage-dns/zones.conf"' in conf
    assert "forward-addr: 9.9.9.9" in conf and 'name: "."' in conf
    with pytest.raises(ValueError):
        render_conf(ResolverSettings(listen=("x",), include_file="f", access=("192.168.1/24x",)))
    # without upstreams Unbound resolves from the root servers itself (no forward zone)
    root = render_conf(ResolverSettings(listen=("192.168.1.10",), include_file="z", access=("192.168.1.0/24",)))
    assert "forward-zone:" not in root and "forward-addr" not in root


class FakeControl:
    """Records calls; holds zones like Unbound would; can be made to fail."""

    def __init__(self, zones=None):
        self.zones = dict(zones or {})
        self.calls = []
        self.down = False

    def _check(self):
        if self.down:
            raise UnboundError("Unbound is not running (unbound-control cannot connect to it)")

    def list_zones(self):
        self._check()
        self.calls.append("list")
        return {n: z.kind for n, z in self.zones.items()}

    def list_data(self):
        self._check()
        return {n: list(z.data) for n, z in self.zones.items()}

    def remove(self, names):
        self._check()
        names = list(names)
        if names:
            self.calls.append(("remove", tuple(names)))
        for n in names:
            self.zones.pop(n, None)

    def add(self, zones):
        self._check()
        if zones:
            self.calls.append(("add", tuple(zones)))
        self.zones.update(zones)


def test_the_controller_persists_atomically_applies_changes_and_leaves_other_zones_alone(tmp_path):
    include = tmp_path / "zones.conf"
    foreign = {"localhost.": Zone("redirect", ()), "mine.home.arpa.": Zone("static", ())}
    control = FakeControl(foreign)
    ctl = DnsController(control, include, "192.168.1.10")
    ctl.set_domains(["a.example.org", "b.example.org"])
    assert ctl.apply_now()
    assert stat.S_IMODE(os.stat(include).st_mode) == 0o644 and "a.example.org." in include.read_text()
    assert set(control.zones) == set(foreign) | {"a.example.org.", "b.example.org."}
    control.calls.clear()
    ctl.set_domains(["a.example.org", "c.example.org"])
    assert ctl.apply_now()
    assert control.calls == [("remove", ("b.example.org.",)), ("add", ("c.example.org.",))]  # nothing else
    assert ctl.status().in_sync and ctl.status().entries == 2
    # a domain that moves to another service is the same entry: nothing to do
    control.calls.clear()
    ctl.set_domains(["c.example.org", "a.example.org"])
    assert ctl.apply_now() and control.calls == []


def test_a_failure_is_named_and_the_next_apply_reconciles_with_what_unbound_has(tmp_path):
    include = tmp_path / "zones.conf"
    control = FakeControl()
    ctl = DnsController(control, include, "192.168.1.10")
    ctl.set_domains(["a.example.org"])
    control.down = True
    assert not ctl.apply_now()
    st = ctl.status()
    assert st.error.startswith("Unbound is not running") and not st.in_sync
    assert "a.example.org." in include.read_text()  # persisted anyway: a restarted Unbound has it
    # Unbound comes back with something else (an old entry of ours, one missing)
    control.down = False
    control.zones = {"old.example.org.": Zone("transparent", ("old.example.org. 60 IN A 192.168.1.10",))}
    ctl.known.add("old.example.org.")
    assert ctl.apply_now()
    assert set(control.zones) == {"a.example.org."} and ctl.status().error is None


def test_a_restarted_controller_knows_its_zones_from_the_include_file(tmp_path):
    include = tmp_path / "zones.conf"
    include.write_text(render_include(desired_zones(["gone.example.org", "kept.example.org"], "192.168.1.10")))
    control = FakeControl(parse_include(include.read_text()) | {"user.example.org.": Zone("static", ())})
    ctl = DnsController(control, include, "192.168.1.10")
    ctl.set_domains(["kept.example.org", "new.example.org"])
    assert ctl.apply_now()
    assert set(control.zones) == {"kept.example.org.", "new.example.org.", "user.example.org."}


def test_a_zone_unbound_has_from_its_own_configuration_is_left_alone_and_named(tmp_path):
    include = tmp_path / "zones.conf"
    user = Zone("static", ("nas.example.org. 3600 IN A 192.168.1.5",))
    control = FakeControl({"nas.example.org.": user})
    ctl = DnsController(control, include, "192.168.1.10")
    ctl.set_domains(["nas.example.org", "web.example.org"])
    assert ctl.apply_now()
    assert control.zones["nas.example.org."] == user  # not replaced
    assert "nas.example.org" not in include.read_text()  # a second definition would stop Unbound
    st = ctl.status()
    assert st.foreign == ["nas.example.org."] and st.in_sync
    ctl.set_domains(["web.example.org"])  # the service goes: the user's zone stays
    assert ctl.apply_now() and control.zones["nas.example.org."] == user
