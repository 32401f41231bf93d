"""The tunnel backend in plugins/module_utils (the runtime includes it as envoyage.module_utils).
The kernel-module path cannot run here (no WireGuard module); its choice and its commands
are tested with a recording `run`, the wireguard-go path for real in test_topology_a."""

import os
import stat

import pytest
from ansible_collections.envoyage.core.plugins.module_utils import _wireguard as wg


def test_keys_are_x25519_and_the_public_key_matches_wg_pubkey():
    import shutil
    import subprocess

    private = wg.generate_private_key()
    assert len(private) == 44 and private != wg.generate_private_key()
    public = wg.public_key(private)
    if shutil.which("wg"):
        assert (
            subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True, check=True).stdout.strip()
            == public
        )


def test_a_key_pair_is_made_once_0600_and_kept(tmp_path):
    path = tmp_path / "wg.key"
    pub, created = wg.ensure_keypair(str(path), check_mode=True)
    assert (pub, created) == (None, True) and not path.exists()
    pub, created = wg.ensure_keypair(str(path))
    assert created and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again, created = wg.ensure_keypair(str(path))
    assert (again, created) == (pub, False)


def test_a_key_file_others_can_read_or_that_holds_no_key_is_refused_without_echoing_it(tmp_path):
    path = tmp_path / "wg.key"
    wg.ensure_keypair(str(path))
    os.chmod(path, 0o644)
    with pytest.raises(wg.WireGuardError, match="readable by others"):
        wg.ensure_keypair(str(path))
    os.chmod(path, 0o600)
    path.write_text("-----BEGIN PRIVATE KEY----- secretstuff")
    with pytest.raises(wg.WireGuardError) as exc:
        wg.read_private_key(str(path))
    assert "secretstuff" not in str(exc.value)


def test_the_address_plan_gives_the_vps_the_first_address_and_home_the_second():
    plan = wg.address_plan("10.88.0.0/24")
    assert (plan["vps"], plan["home"], plan["clients_from"], plan["prefixlen"]) == (
        "10.88.0.1",
        "10.88.0.2",
        "10.88.0.3",
        24,
    )
    assert wg.address_plan("fd00:88::/64")["home"] == "fd00:88::2"
    for bad, needle in (("10.88.0.1/24", "not a network"), ("10.88.0.0/30", "too small"), ("nonsense", "CIDR")):
        with pytest.raises(wg.WireGuardError, match=needle):
            wg.address_plan(bad)


def test_home_dials_with_keepalive_and_the_vps_only_listens():
    plan = wg.address_plan("10.88.0.0/24")
    home_key, vps_key = wg.generate_private_key(), wg.generate_private_key()
    home = wg.render_home(home_key, wg.public_key(vps_key), "vps.example.org:51820", plan)
    assert "PersistentKeepalive = 25" in home and "Endpoint = vps.example.org:51820" in home
    assert "AllowedIPs = 10.88.0.0/24" in home and "ListenPort" not in home
    vps = wg.render_vps(vps_key, wg.public_key(home_key), plan)
    assert "ListenPort = 51820" in vps and "Endpoint" not in vps and "AllowedIPs = 10.88.0.2/32" in vps
    assert "Endpoint = [2001:db8::1]:51820" in wg.render_home(
        home_key, wg.public_key(vps_key), "[2001:db8::1]:51820", plan
    )
    for bad in ("vps.example.org", "vps:99999", ":51820"):
        with pytest.raises(wg.WireGuardError, match="HOST:PORT"):
            wg.render_home(home_key, wg.public_key(vps_key), bad, plan)
    with pytest.raises(wg.WireGuardError, match="VPS public key"):
        wg.render_home(home_key, "short", "vps:51820", plan)


def test_the_backend_is_the_kernel_module_when_present_else_wireguard_go():
    assert wg.choose_backend(True, "/usr/bin/wireguard-go") == "kernel"
    assert wg.choose_backend(True, None) == "kernel"
    assert wg.choose_backend(False, "/usr/bin/wireguard-go") == "wireguard-go"
    with pytest.raises(wg.WireGuardError, match="apt install wireguard-go"):
        wg.choose_backend(False, None)


def test_kernel_module_detection_reads_sys_module_and_modules_dep(tmp_path):
    assert wg.kernel_module_available(str(tmp_path / "nope"), str(tmp_path)) is False
    (tmp_path / "wireguard").mkdir()
    assert wg.kernel_module_available(str(tmp_path / "wireguard"), str(tmp_path)) is True
    release = os.uname()[2]
    (tmp_path / release).mkdir()
    (tmp_path / release / "modules.dep").write_text("kernel/drivers/net/wireguard/wireguard.ko: kernel/lib/x.ko\n")
    assert wg.kernel_module_available(str(tmp_path / "nope"), str(tmp_path)) is True


class Recorder:
    def __init__(self, exists=False):
        self.calls = []
        self.exists = exists

    def __call__(self, cmd):
        self.calls.append(cmd)
        if cmd[-4:-1] == ["link", "show", "dev"] or cmd[:3] == ["ip", "link", "show"]:
            return (0 if self.exists else 1), "", ""
        return 0, "", ""


@pytest.mark.parametrize(
    "backend,create",
    [("kernel", ["ip", "link", "add", "dev", "wg0", "type", "wireguard"]), ("wireguard-go", ["wireguard-go", "wg0"])],
)
def test_bring_up_creates_the_interface_loads_the_file_and_never_puts_a_key_on_a_command_line(backend, create):
    run = Recorder()
    wg.bring_up("wg0", "/etc/envoyage/wg0.conf", "10.88.0.2", 24, backend=backend, run=run)
    assert run.calls.index(create) < run.calls.index(["wg", "setconf", "wg0", "/etc/envoyage/wg0.conf"])
    assert ["wg", "setconf", "wg0", "/etc/envoyage/wg0.conf"] in run.calls
    assert ["ip", "address", "replace", "10.88.0.2/24", "dev", "wg0"] in run.calls
    # an existing interface is reconfigured, not created again
    again = Recorder(exists=True)
    wg.bring_up("wg0", "/etc/envoyage/wg0.conf", "10.88.0.2", 24, backend=backend, run=again)
    assert create not in again.calls
    netns = Recorder()
    wg.bring_up("wg0", "/x.conf", "10.88.0.1", 24, backend=backend, netns="vps", run=netns)
    assert all(c[:4] == ["ip", "netns", "exec", "vps"] for c in netns.calls)


def test_bring_up_loads_the_private_key_from_its_file_after_the_configuration(tmp_path):
    key = tmp_path / "wg0.key"
    wg.ensure_keypair(str(key))
    run = Recorder()
    wg.bring_up("wg0", "/x.conf", "10.88.0.2", 24, backend="kernel", run=run, private_key_path=str(key))
    setconf = run.calls.index(["wg", "setconf", "wg0", "/x.conf"])
    assert run.calls[setconf + 1] == ["wg", "set", "wg0", "private-key", str(key)]
    # a key others can read is refused before it is loaded
    key.chmod(0o644)
    with pytest.raises(wg.WireGuardError):
        wg.bring_up("wg0", "/x.conf", "10.88.0.2", 24, backend="kernel", run=Recorder(), private_key_path=str(key))


def test_a_failing_command_is_reported_with_what_it_was_doing():
    def run(cmd):
        return (1, "", "RTNETLINK answers: Operation not permitted") if cmd[:2] == ["wg", "setconf"] else (0, "", "")

    with pytest.raises(wg.WireGuardError, match="loading the tunnel configuration into wg0 failed: RTNETLINK"):
        wg.bring_up("wg0", "/x.conf", "10.88.0.2", 24, backend="kernel", run=run)


def test_status_parses_wg_show_and_names_a_tunnel_that_is_down():
    peers = wg.parse_show("PEER=\t1000\n", "PEER=\t123\t456\n", "PEER=\t198.51.100.1:51820\n", now=1030)
    assert peers == {
        "PEER=": {
            "last_handshake": 1000,
            "handshake_age": 30,
            "rx_bytes": 123,
            "tx_bytes": 456,
            "endpoint": "198.51.100.1:51820",
        }
    }
    assert wg.tunnel_problem(peers) is None
    never = wg.parse_show("PEER=\t0\n", "PEER=\t0\t148\n", "PEER=\t(none)\n", now=1030)
    assert "no handshake" in wg.tunnel_problem(never)
    stale = wg.parse_show("PEER=\t1000\n", "", "", now=1000 + 600)
    assert "600 s ago" in wg.tunnel_problem(stale)
    assert "no peer" in wg.tunnel_problem({})


def test_reading_status_of_a_missing_interface_says_so():
    def run(cmd):
        return 1, "", "Unable to access interface: No such device"

    with pytest.raises(wg.WireGuardError, match="does not exist"):
        wg.read_status("wg9", run=run)


def test_an_endpoint_with_spaces_or_newlines_cannot_inject_configuration():
    plan = wg.address_plan("10.88.0.0/24")
    key = wg.generate_private_key()
    for bad in ("vps\nPrivateKey = x:51820", "vps .example:51820", "vps#x:51820"):
        with pytest.raises(wg.WireGuardError, match="HOST:PORT"):
            wg.render_home(key, wg.public_key(key), bad, plan)


def test_command_output_never_carries_a_key_and_a_missing_program_is_an_error_not_a_crash():
    key = wg.generate_private_key()

    def run(cmd):
        return 1, "", "Line unrecognized: `PrivateKey = %s'" % key

    with pytest.raises(wg.WireGuardError) as exc:
        wg.bring_up(
            "wg0",
            "/x.conf",
            "10.88.0.2",
            24,
            backend="kernel",
            run=lambda c: (0, "", "") if c[:2] != ["wg", "setconf"] else run(c),
        )
    assert key not in str(exc.value) and "(key hidden)" in str(exc.value)
    code, _out, err = wg._default_run(["/nonexistent/wg", "show"])
    assert code == 127 and "nonexistent" in err


def test_the_unreachable_route_comes_before_the_interface_and_outlives_it():
    run = Recorder()
    wg.bring_up("wg0", "/x.conf", "10.88.0.2", 24, backend="kernel", run=run)
    route = ["ip", "-4", "route", "replace", "unreachable", "10.88.0.0/24", "metric", "4294967295"]
    assert run.calls.index(route) < run.calls.index(["ip", "link", "add", "dev", "wg0", "type", "wireguard"])
    down = Recorder(exists=True)
    wg.bring_down("wg0", run=down)
    assert not any("route" in c for c in down.calls)
    assert wg.ensure_unreachable_route("fd00:88::2", 64, run=Recorder()) == "fd00:88::/64"


def test_the_tunnel_firewall_passes_answers_and_two_ports_to_the_tunnel_address_and_drops_the_rest():
    rules = wg.render_firewall("envoyage0", "10.88.0.2", [18443, 18080, 18080])
    lines = rules.splitlines()
    assert lines[:2] == ["*filter", ":ENVOYAGE-TUN-envoyage0 - [0:0]"] and rules.endswith("\nCOMMIT\n")
    assert lines[2] == "-A ENVOYAGE-TUN-envoyage0 -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN"
    assert lines[3] == ("-A ENVOYAGE-TUN-envoyage0 -d 10.88.0.2/32 -p tcp -m multiport --dports 18080,18443 -j RETURN")
    assert lines[4].endswith("-j DROP") and len(lines) == 6
    assert "ACCEPT" not in rules  # allowed packets go on through the host's own rules
    assert "-d fd00::2/128" in wg.render_firewall("wg0", "fd00::2", [1])
    for bad in ((0,), (70000,), range(1, 20)):
        with pytest.raises(wg.WireGuardError, match="TCP ports"):
            wg.render_firewall("wg0", "10.88.0.2", bad)
    with pytest.raises(wg.WireGuardError, match="interface name"):
        wg.render_firewall("wg0 -j ACCEPT", "10.88.0.2", [1])


class FakeIptables(Recorder):
    """Just enough iptables: which chains exist and which rules -C finds."""

    def __init__(self, chains=("INPUT", "FORWARD"), rules=()):
        super().__init__()
        self.chains, self.rules = set(chains), set(rules)

    def __call__(self, cmd):
        self.calls.append(cmd)
        if cmd[0].endswith("-restore"):
            return 0, "", ""
        args = cmd[2:]
        if args[:2] == ["-n", "-L"]:
            return (0 if args[2] in self.chains else 1), "", ""
        if args[0] == "-N":
            self.chains.add(args[1])
            return 0, "", ""
        if args[0] == "-C":
            return (0 if " ".join(args[1:]) in self.rules else 1), "", ""
        if args[0] == "-I":
            self.rules.add(" ".join([args[1]] + args[3:]))
            return 0, "", ""
        return super().__call__(cmd)


def test_the_firewall_hooks_once_into_input_forward_and_docker_user_at_the_top():
    run = FakeIptables()
    assert wg.apply_firewall("envoyage0", "10.88.0.2", [18080, 18443], run=run) == ["INPUT", "FORWARD", "DOCKER-USER"]
    assert ["iptables", "-w", "-N", "DOCKER-USER"] in run.calls  # dockerd keeps a chain that exists
    for hook in ("INPUT", "FORWARD", "DOCKER-USER"):
        # at the top: above Docker's RETURN in DOCKER-USER and any ACCEPT of the host's
        assert ["iptables", "-w", "-I", hook, "1", "-i", "envoyage0", "-j", "ENVOYAGE-TUN-envoyage0"] in run.calls
    assert run.calls[0][:3] == ["iptables-restore", "-w", "--noflush"]
    # a second run refills the chain and adds nothing
    assert wg.apply_firewall("envoyage0", "10.88.0.2", [18080, 18443], run=run) == []
    assert wg.apply_firewall("envoyage0", "fd00::2", [18080], run=FakeIptables())[0] == "INPUT"


def test_the_status_file_holds_no_key_and_is_read_while_fresh(tmp_path):
    key = wg.generate_private_key()
    pub = wg.public_key(key)
    outputs = {
        "latest-handshakes": "%s\t1000\n" % pub,
        "transfer": "%s\t123\t456\n" % pub,
        "endpoints": "%s\t198.51.100.1:51820\n" % pub,
    }

    def run(cmd):
        assert "dump" not in cmd and "private-key" not in cmd
        return 0, outputs[cmd[-1]], ""

    path = tmp_path / "run" / "wg0.json"
    wg.write_status_file(str(path), wg.status_document("wg0", run=run, now=1010))
    text = path.read_text()
    assert key not in text and pub not in text and "198.51.100.1:51820" in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644 and not list(path.parent.glob(".status-*"))
    peers = wg.read_status("wg0", status_file=str(path), now=1020, run=lambda c: pytest.fail("read the socket"))
    assert peers == {
        "peer1": {
            "last_handshake": 1000,
            "handshake_age": 20,
            "rx_bytes": 123,
            "tx_bytes": 456,
            "endpoint": "198.51.100.1:51820",
        }
    }
    assert wg.tunnel_problem(peers) is None
    # the writer stopped: named, not silently old numbers
    with pytest.raises(wg.WireGuardError, match="last written 90 s ago: its writer .envoyage-tunnel-status"):
        wg.read_status("wg0", status_file=str(path), now=1100)
    with pytest.raises(wg.WireGuardError, match="about the interface 'wg0', not wg1"):
        wg.read_status("wg1", status_file=str(path), now=1020)


def test_the_status_file_carries_why_the_interface_cannot_be_read_and_a_missing_file_falls_back(tmp_path):
    path = tmp_path / "wg0.json"

    def gone(cmd):
        return 1, "", "Unable to access interface: No such device"

    wg.write_status_file(str(path), wg.status_document("wg0", run=gone, now=1000))
    with pytest.raises(wg.WireGuardError, match="wg0 does not exist"):
        wg.read_status("wg0", status_file=str(path), now=1001)
    path.unlink()
    with pytest.raises(wg.WireGuardError, match="does not exist.*status file .* does not exist: is envoyage-tunnel"):
        wg.read_status("wg0", status_file=str(path), run=gone)
    assert wg.read_status("wg0", status_file=str(path), run=lambda c: (0, "", "")) == {}
