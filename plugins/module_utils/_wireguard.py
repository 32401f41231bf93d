# -*- coding: utf-8 -*-
# Copyright: Envoyage contributors
# Apache License 2.0 (see LICENSE)
"""The WireGuard tunnel backend: keys, the address plan, config rendering, bring-up
and status. The one copy of this code (docs/architecture.md, "Who owns what"): the Ansible
modules import it from here and the runtime package includes this directory as
`envoyage.module_utils`.

Pure functions (keys, plan, rendering, the backend choice, parsing `wg` output) are
separate from the few that run commands (`bring_up`, `bring_down`, `read_status`), which
take a `run` function so that they can be tested without a tunnel.

Only the standard library and `cryptography` are used: Ansible runs this on hosts where
the runtime is not installed. Addresses use the standard `ipaddress` module rather than
netaddr, for the same reason (one dependency less on every managed host).

Secrets: a private key is only ever read from or written to a 0600 file and passed to
`wg` as a file, never on a command line (visible in the process list) and never in an
error message.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import ipaddress
import os
import re
import shutil
import subprocess
import time

from ._files import SecretFileError, read_secret_file, write_secret_file

DEFAULT_PREFIX = "10.88.0.0/24"
DEFAULT_LISTEN_PORT = 51820
HOME_KEEPALIVE = 25  # seconds: keeps the NAT mapping of a home behind CGNAT open
# a handshake happens at least every 2 minutes while traffic or keepalives flow;
# older than this means the tunnel is down
HANDSHAKE_STALE_SECONDS = 180


class WireGuardError(Exception):
    """A problem with keys, the plan, or the tunnel, in a sentence for the user."""


# -- keys ---------------------------------------------------------------------------


def _x25519():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import x25519
    except ImportError:
        raise WireGuardError(
            "the Python package 'cryptography' is needed to create WireGuard keys "
            "(Debian: apt install python3-cryptography)"
        ) from None
    return x25519, serialization


def _raw(key_b64, what):
    try:
        raw = base64.b64decode(key_b64.strip(), validate=True)
    except (binascii.Error, ValueError, AttributeError):
        raise WireGuardError("the %s is not a WireGuard key (expected 44 characters of base64)" % what) from None
    if len(raw) != 32:
        raise WireGuardError("the %s is not a WireGuard key (expected 32 bytes, got %d)" % (what, len(raw)))
    return raw


def check_key(key_b64, what="key"):
    """Raise WireGuardError unless `key_b64` is a base64 32-byte key; returns it stripped."""
    _raw(key_b64, what)
    return key_b64.strip()


def generate_private_key():
    x25519, serialization = _x25519()
    raw = x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode("ascii")


def public_key(private_b64):
    x25519, serialization = _x25519()
    private = x25519.X25519PrivateKey.from_private_bytes(_raw(private_b64, "private key"))
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def read_private_key(path):
    """The private key in `path`; refuses a file others can read."""
    try:
        content = read_secret_file(path, "the private key file").decode("ascii", "replace")
    except SecretFileError as exc:
        raise WireGuardError(str(exc)) from None
    try:
        return check_key(content, "private key in %s" % path)
    except WireGuardError:
        # never echo the content: it may be a key in another format
        raise WireGuardError("the file %s does not hold a WireGuard private key" % path) from None


def keypair_needs_regeneration(path):
    """Why a private key must be written at `path` (a sentence), or None. Only a missing
    file counts: an existing key is never replaced (a tunnel keeps its identity), and one
    that others can read or that holds something else is an error (read_private_key)."""
    return None if os.path.exists(path) else "it did not exist"


def keypair_diff(path, created):
    """The diff of ensure_keypair's run: whether the key file existed before and after."""
    return {"before": {"path": path, "exists": not created}, "after": {"path": path, "exists": True}}


def ensure_keypair(path, check_mode=False):
    """Create a private key at `path` if keypair_needs_regeneration() says so. Returns
    (public key, created); the public key is None in check mode when the key would be
    made. An existing file is kept as it is."""
    if not keypair_needs_regeneration(path):
        return public_key(read_private_key(path)), False
    if check_mode:
        return None, True
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise WireGuardError("the directory %s for the private key does not exist" % directory)
    try:
        write_secret_file(path, generate_private_key() + "\n", exclusive=True)
    except OSError as exc:
        if getattr(exc, "errno", None) != 17:  # EEXIST: another run made it just now; use that one
            raise WireGuardError("cannot write the private key %s: %s" % (path, exc.strerror or exc)) from None
        return public_key(read_private_key(path)), False
    return public_key(read_private_key(path)), True


# -- the address plan -----------------------------------------------------------------


def address_plan(prefix=DEFAULT_PREFIX):
    """The tunnel's addresses from one prefix: the VPS gets the first host address, home
    the second, and the rest is the pool for VPN clients (later)."""
    try:
        net = ipaddress.ip_network(prefix, strict=True)
    except ValueError as exc:
        raise WireGuardError("tunnel prefix %r is not a network in CIDR notation (%s)" % (prefix, exc)) from None
    if net.version == 4 and net.prefixlen > 29 or net.version == 6 and net.prefixlen > 125:
        raise WireGuardError(
            "tunnel prefix %s is too small: it needs room for the VPS, home and VPN clients "
            "(use /29 or larger)" % prefix
        )
    hosts = net.hosts() if net.version == 4 else (net.network_address + i for i in range(1, 2**16))
    vps = next(hosts)
    home = next(hosts)
    first_client = next(hosts)
    return {
        "prefix": str(net),
        "prefixlen": net.prefixlen,
        "vps": str(vps),
        "home": str(home),
        "clients_from": str(first_client),
    }


def parse_endpoint(endpoint):
    """host:port or [v6]:port -> (host, port); a clear error otherwise."""
    text = (endpoint or "").strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if (
        not sep
        or not host
        or not port.isdigit()
        or not 0 < int(port) < 65536
        or any(c.isspace() or ord(c) < 32 or c in "[]#=" for c in host)
    ):
        raise WireGuardError("the VPS endpoint %r must be HOST:PORT (for example vps.example.org:51820)" % endpoint)
    return host, int(port)


# -- config rendering (wg(8) setconf format; addresses are set by bring_up) -------------


def _interface(private_key, what):
    """The [Interface] head; without a key (None) the key is loaded from its file."""
    return ["[Interface]"] + ([] if private_key is None else ["PrivateKey = %s" % check_key(private_key, what)])


def render_home(private_key, vps_public_key, vps_endpoint, plan, keepalive=HOME_KEEPALIVE):
    """Home dials the VPS: the VPS is its only peer, with keepalives so the NAT in front
    of home keeps the tunnel open. Home listens on no fixed port. `private_key` None:
    no PrivateKey line (bring_up(private_key_path=...) loads it)."""
    host, port = parse_endpoint(vps_endpoint)
    endpoint = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
    return "\n".join(
        _interface(private_key, "home private key")
        + [
            "",
            "[Peer]",
            "# the VPS",
            "PublicKey = %s" % check_key(vps_public_key, "VPS public key"),
            "Endpoint = %s" % endpoint,
            "AllowedIPs = %s" % plan["prefix"],
            "PersistentKeepalive = %d" % int(keepalive),
            "",
        ]
    )


def render_vps(private_key, home_public_key, plan, listen_port=DEFAULT_LISTEN_PORT):
    """The VPS listens and never dials: home's endpoint is learnt from its handshakes."""
    return "\n".join(
        _interface(private_key, "VPS private key")
        + [
            "ListenPort = %d" % int(listen_port),
            "",
            "[Peer]",
            "# home",
            "PublicKey = %s" % check_key(home_public_key, "home public key"),
            "AllowedIPs = %s/%d" % (plan["home"], 32 if ":" not in plan["home"] else 128),
            "",
        ]
    )


# -- bring-up -------------------------------------------------------------------------


def kernel_module_available(sys_module="/sys/module/wireguard", modules_dir="/lib/modules"):
    """True if the kernel has WireGuard loaded or can load it."""
    if os.path.isdir(sys_module):
        return True
    release = os.uname()[2]
    try:
        with open(os.path.join(modules_dir, release, "modules.dep")) as handle:
            return any("/wireguard.ko" in line.split(":", 1)[0] for line in handle)
    except OSError:
        return False


def choose_backend(kernel_available, wireguard_go_path):
    """'kernel' when the kernel has WireGuard, else 'wireguard-go' when installed."""
    if kernel_available:
        return "kernel"
    if wireguard_go_path:
        return "wireguard-go"
    raise WireGuardError(
        "this kernel has no WireGuard module and wireguard-go is not installed "
        "(Debian: apt install wireguard-go wireguard-tools)"
    )


def _run(cmd, netns=None, run=None):
    run = run or _default_run
    if netns:
        cmd = ["ip", "netns", "exec", netns] + list(cmd)
    return run(cmd)


def _default_run(cmd, timeout=10):
    """(exit code, stdout, stderr); a missing program or a hang is an exit code too."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except OSError as exc:
        return 127, "", "%s: %s" % (cmd[0], exc.strerror or exc)
    except subprocess.TimeoutExpired:
        return 124, "", "%s did not finish within %d s" % (cmd[0], timeout)
    return proc.returncode, proc.stdout, proc.stderr


_KEY_LIKE = re.compile(r"[A-Za-z0-9+/]{42,43}=")


def _redact(text):
    """Command output may quote a line of the configuration: never a key."""
    return _KEY_LIKE.sub("(key hidden)", text)


def _must(cmd, netns=None, run=None, what=None):
    code, out, err = _run(cmd, netns, run)
    if code != 0:
        raise WireGuardError("%s failed: %s" % (what or " ".join(cmd[:3]), _redact((err or out).strip())[:300]))
    return out


# -- the tunnel interface's firewall and the unreachable route (docs/security.md) -------

FIREWALL_CHAIN_PREFIX = "ENVOYAGE-TUN-"  # + the interface name: 28 characters at most (iptables' limit)
# where the chain is hooked: local delivery, forwarding (a home without Docker), and
# Docker's own hook (its published ports are DNAT'ed and forwarded before FORWARD's
# later rules, so only DOCKER-USER sees them first)
FIREWALL_HOOKS = ("INPUT", "FORWARD", "DOCKER-USER")
# the route for the tunnel prefix that outlives the interface: the interface's own route
# (metric 0) wins while it exists
UNREACHABLE_METRIC = 4294967295
_IFACE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def firewall_chain(interface):
    if not _IFACE.match(interface or ""):
        raise WireGuardError("interface name %r: use 1-15 letters, digits, _, . or -" % (interface,))
    return FIREWALL_CHAIN_PREFIX + interface


def render_firewall(interface, address, tcp_ports):
    """The chain that filters what arrives on the tunnel interface, in iptables-restore
    format (applied with --noflush: declaring the chain creates or empties it, so the
    refill is one transaction). Answers to this host's own connections pass; new
    connections only to `address` (this host's tunnel address) on `tcp_ports`; the rest
    is dropped. Allowed packets RETURN to the hooking chain, so the host's own rules (and
    Docker's) still apply to them; nothing is accepted here."""
    chain = firewall_chain(interface)
    ip = ipaddress.ip_address(address)
    ports = sorted(set(int(p) for p in tcp_ports))
    if any(not 0 < p < 65536 for p in ports) or len(ports) > 15:
        raise WireGuardError("the tunnel firewall takes 1-15 TCP ports between 1 and 65535, got %r" % (tcp_ports,))
    lines = ["*filter", ":%s - [0:0]" % chain, "-A %s -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN" % chain]
    if ports:
        lines.append(
            "-A %s -d %s/%d -p tcp -m multiport --dports %s -j RETURN"
            % (chain, ip, 32 if ip.version == 4 else 128, ",".join(str(p) for p in ports))
        )
    lines += [
        '-A %s -m comment --comment "envoyage: only %s from the tunnel" -j DROP'
        % (chain, "tcp " + ",".join(str(p) for p in ports) if ports else "answers"),
        "COMMIT",
        "",
    ]
    return "\n".join(lines)


def _iptables(address):
    return "ip6tables" if ipaddress.ip_address(address).version == 6 else "iptables"


def apply_firewall(interface, address, tcp_ports, netns=None, run=None):
    """Install (or refresh) the tunnel interface's firewall: the chain refilled atomically,
    then a jump `-i INTERFACE` at the top of INPUT, FORWARD and DOCKER-USER (created if
    dockerd has not made it yet; dockerd keeps an existing one and its rules), each added
    only if missing, so a second run changes nothing. Keyed on the interface name only:
    the rules exist before the interface does and touch no other traffic."""
    import tempfile

    chain = firewall_chain(interface)
    tool = _iptables(address)
    fd, path = tempfile.mkstemp(prefix="envoyage-tunnel-fw-", suffix=".rules")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(render_firewall(interface, address, tcp_ports))
        _must(
            [tool + "-restore", "-w", "--noflush", path], netns, run, "loading the tunnel firewall (%s-restore)" % tool
        )
    finally:
        os.unlink(path)
    added = []
    for hook in FIREWALL_HOOKS:
        if hook == "DOCKER-USER" and _run([tool, "-w", "-n", "-L", hook], netns, run)[0] != 0:
            code, out, err = _run([tool, "-w", "-N", hook], netns, run)
            if code != 0 and _run([tool, "-w", "-n", "-L", hook], netns, run)[0] != 0:  # not made meanwhile
                raise WireGuardError("creating the chain DOCKER-USER failed: %s" % (err or out).strip()[:300])
        rule = ["-i", interface, "-j", chain]
        if _run([tool, "-w", "-C", hook] + rule, netns, run)[0] != 0:
            _must([tool, "-w", "-I", hook, "1"] + rule, netns, run, "hooking the tunnel firewall into %s" % hook)
            added.append(hook)
    return added


def remove_firewall(interface, netns=None, run=None):
    """Remove the jumps and the chain (the lab's `down`; the role keeps them)."""
    chain = firewall_chain(interface)
    for tool in ("iptables", "ip6tables"):
        if _run([tool, "-w", "-n", "-L", chain], netns, run)[0] != 0:
            continue
        for hook in FIREWALL_HOOKS:
            for _attempt in range(16):  # bounded: a rule added twice by two concurrent runs goes too
                if _run([tool, "-w", "-D", hook, "-i", interface, "-j", chain], netns, run)[0] != 0:
                    break
        _run([tool, "-w", "-F", chain], netns, run)
        _must([tool, "-w", "-X", chain], netns, run, "removing the chain %s" % chain)


def _network(address, prefixlen):
    try:
        return ipaddress.ip_network("%s/%d" % (address, int(prefixlen)), strict=False)
    except ValueError as exc:
        raise WireGuardError("tunnel address %s/%s: %s" % (address, prefixlen, exc)) from None


def ensure_unreachable_route(address, prefixlen, netns=None, run=None):
    """An `unreachable` route for the tunnel prefix with the highest metric: while the
    interface exists its own route wins; once it is gone (a restart deletes it) a
    connection to a tunnel address fails at once (EHOSTUNREACH) instead of following the
    default route. Kept by bring_down."""
    net = _network(address, prefixlen)
    _must(
        ["ip", "-%d" % net.version, "route", "replace", "unreachable", str(net), "metric", str(UNREACHABLE_METRIC)],
        netns,
        run,
        "adding the unreachable route for %s" % net,
    )
    return str(net)


def remove_unreachable_route(prefix, netns=None, run=None):
    net = ipaddress.ip_network(prefix, strict=False)
    return (
        _run(
            ["ip", "-%d" % net.version, "route", "del", "unreachable", str(net), "metric", str(UNREACHABLE_METRIC)],
            netns,
            run,
        )[0]
        == 0
    )


def bring_up(
    interface, conf_path, address, prefixlen, backend=None, netns=None, run=None, private_key_path=None, allow_tcp=None
):
    """Create `interface`, load `conf_path` (wg setconf format) and set its address.
    Idempotent: an interface that exists is reconfigured, not recreated. With
    `private_key_path` the configuration holds no PrivateKey line: the key is loaded from
    that file (0600) with `wg set`, so the configuration file carries no secret.
    First, before the interface exists: the unreachable route for the tunnel prefix and,
    with `allow_tcp` (home: the tunnel listener and the edge link), the interface's
    firewall (apply_firewall)."""
    ensure_unreachable_route(address, prefixlen, netns, run)
    if allow_tcp is not None:
        apply_firewall(interface, address, allow_tcp, netns, run)
    if backend is None:
        backend = choose_backend(kernel_module_available(), shutil.which("wireguard-go"))
    code = _run(["ip", "link", "show", "dev", interface], netns, run)[0]
    if code != 0:
        if backend == "kernel":
            _must(
                ["ip", "link", "add", "dev", interface, "type", "wireguard"],
                netns,
                run,
                "creating the WireGuard interface %s" % interface,
            )
        else:
            # daemonizes once the interface and its control socket exist
            _must(["wireguard-go", interface], netns, run, "starting wireguard-go for %s" % interface)
    _must(["wg", "setconf", interface, conf_path], netns, run, "loading the tunnel configuration into %s" % interface)
    if private_key_path:
        read_private_key(private_key_path)  # refuses a missing, malformed or readable-by-others key
        _must(
            ["wg", "set", interface, "private-key", private_key_path],
            netns,
            run,
            "loading the private key into %s" % interface,
        )
    _must(
        ["ip", "address", "replace", "%s/%d" % (address, prefixlen), "dev", interface],
        netns,
        run,
        "setting the tunnel address on %s" % interface,
    )
    _must(["ip", "link", "set", "mtu", "1420", "up", "dev", interface], netns, run, "bringing %s up" % interface)
    return backend


def bring_down(interface, netns=None, run=None):
    """Remove the interface (wireguard-go exits with it). Returns False if it was not there.
    The unreachable route and the firewall stay: nothing leaks while it is gone."""
    code = _run(["ip", "link", "show", "dev", interface], netns, run)[0]
    if code != 0:
        return False
    _must(["ip", "link", "delete", "dev", interface], netns, run, "removing %s" % interface)
    return True


# -- status ---------------------------------------------------------------------------


def parse_show(latest_handshakes, transfer, endpoints, now=None):
    """Per peer public key: handshake time and age, bytes, endpoint, from the outputs of
    `wg show IFACE latest-handshakes`, `... transfer` and `... endpoints` (these never
    print the private key, unlike `wg show IFACE dump`)."""
    now = time.time() if now is None else now
    peers: dict = {}
    for line in latest_handshakes.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            ts = int(parts[1])
            peers.setdefault(parts[0], {})["last_handshake"] = ts or None
            peers[parts[0]]["handshake_age"] = round(now - ts, 1) if ts else None
    for line in transfer.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            peer = peers.setdefault(parts[0], {})
            peer["rx_bytes"], peer["tx_bytes"] = int(parts[1]), int(parts[2])
    for line in endpoints.splitlines():
        parts = line.split()
        if len(parts) == 2:
            peers.setdefault(parts[0], {})["endpoint"] = None if parts[1] == "(none)" else parts[1]
    return peers


def read_status(interface, netns=None, run=None, now=None, status_file=None):
    """The interface's peers as parse_show gives them; WireGuardError if it cannot be read.
    With `status_file` (what the wireguard role's root-run writer keeps fresh, for a
    control plane that may not use wireguard-go's socket): that file when it exists (a
    stale one is a problem of its own), else the interface as without it."""
    if status_file:
        try:
            return read_status_file(status_file, interface, now=now)
        except StatusFileMissing as missing:
            try:
                return _read_interface(interface, netns, run, now)
            except WireGuardError as exc:
                raise WireGuardError("%s (%s)" % (exc, missing)) from None
    return _read_interface(interface, netns, run, now)


def _read_interface(interface, netns=None, run=None, now=None):
    outputs = []
    for what in ("latest-handshakes", "transfer", "endpoints"):
        code, out, err = _run(["wg", "show", interface, what], netns, run)
        if code != 0:
            text = (err or out).strip()
            uapi = "/var/run/wireguard/%s.sock" % interface
            if netns is None and os.path.exists(uapi) and not os.access(uapi, os.W_OK):
                # wireguard-go's control socket is root's alone (and it exits if that changes)
                raise WireGuardError(
                    "cannot read the tunnel's status: %s is wireguard-go's control socket and only "
                    "root may use it (with the kernel's WireGuard, CAP_NET_ADMIN is enough)" % uapi
                )
            if "No such device" in text or "Unable to access interface" in text:
                raise WireGuardError("the tunnel interface %s does not exist (is the tunnel unit running?)" % interface)
            if "Operation not permitted" in text or "ermission denied" in text:
                raise WireGuardError("not allowed to read the tunnel interface %s (needs CAP_NET_ADMIN)" % interface)
            raise WireGuardError("cannot read the tunnel interface %s: %s" % (interface, _redact(text)[:200]))
        outputs.append(out)
    handshakes, transfer, endpoints = outputs
    return parse_show(handshakes, transfer, endpoints, now=now)


def tunnel_problem(peers, stale_after=HANDSHAKE_STALE_SECONDS):
    """A sentence if the tunnel is not up (no peer, no handshake, a stale one), else None."""
    if not peers:
        return "the tunnel has no peer configured"
    ages = [p.get("handshake_age") for p in peers.values()]
    known = [a for a in ages if a is not None]
    if not known:
        return "no handshake with the VPS yet (check the VPS endpoint, its firewall for UDP, and its public key)"
    if min(known) > stale_after:
        return "last handshake with the VPS was %d s ago: the tunnel is down" % min(known)
    return None


# -- the status file (wireguard-go's socket is root's alone) ----------------------------

STATUS_DIR = "/run/envoyage-tunnel"
STATUS_WRITER_UNIT = "envoyage-tunnel-status.service"
# the writer refreshes every few seconds; a file older than this means it is not running
STATUS_FILE_STALE_SECONDS = 30


class StatusFileMissing(WireGuardError):
    """There is no status file (no writer installed, or it is stopped)."""


def default_status_file(interface):
    return os.path.join(STATUS_DIR, "%s.json" % interface)


def status_document(interface, netns=None, run=None, now=None):
    """What the status writer writes: per peer the last handshake (epoch seconds), the
    endpoint and the byte counters, or the sentence why the interface cannot be read.
    No key of any kind, not even the peers' public keys (and never `wg show dump`, whose
    first line is the private key)."""
    now = time.time() if now is None else now
    doc = {"interface": interface, "written_at": round(now, 3), "peers": [], "error": None}
    try:
        peers = _read_interface(interface, netns, run, now)
    except WireGuardError as exc:
        doc["error"] = _redact(str(exc))
        return doc
    for _key, peer in sorted(peers.items()):
        doc["peers"].append({k: peer.get(k) for k in ("last_handshake", "endpoint", "rx_bytes", "tx_bytes")})
    return doc


def write_status_file(path, doc):
    """Replace `path` atomically (a reader never sees half a file), mode 0644: the status
    holds no secret and the control plane's user must read it."""
    import json
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(prefix=".status-", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(doc, handle, sort_keys=True)
            handle.write("\n")
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)  # atomic on POSIX (os.replace is not in Python 2)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_status_file(path, interface, now=None, stale_after=STATUS_FILE_STALE_SECONDS):
    """The peers (as parse_show gives them, keyed "peer1", "peer2", ...) from a file the
    writer made; StatusFileMissing if there is none, WireGuardError if it is stale, for
    another interface, unreadable, or says why the interface could not be read."""
    import json

    now = time.time() if now is None else now
    try:
        with open(path) as handle:
            doc = json.load(handle)
    except OSError as exc:
        if getattr(exc, "errno", None) == 2:
            raise StatusFileMissing(
                "the tunnel status file %s does not exist: is %s running?" % (path, STATUS_WRITER_UNIT)
            ) from None
        raise WireGuardError("cannot read the tunnel status file %s: %s" % (path, exc.strerror or exc)) from None
    except ValueError:
        raise WireGuardError(
            "the tunnel status file %s is not the JSON its writer (%s) writes" % (path, STATUS_WRITER_UNIT)
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("written_at"), (int, float)):
        raise WireGuardError(
            "the tunnel status file %s is not the JSON its writer (%s) writes" % (path, STATUS_WRITER_UNIT)
        )
    if doc.get("interface") != interface:
        raise WireGuardError(
            "the tunnel status file %s is about the interface %r, not %s" % (path, doc.get("interface"), interface)
        )
    age = now - doc["written_at"]
    if age > stale_after:
        raise WireGuardError(
            "the tunnel status file %s was last written %d s ago: its writer (%s) is not "
            "running or is stuck" % (path, age, STATUS_WRITER_UNIT)
        )
    if doc.get("error"):
        raise WireGuardError(str(doc["error"]))
    peers = {}
    for i, peer in enumerate(doc.get("peers") or [], 1):
        ts = peer.get("last_handshake")
        peers["peer%d" % i] = {
            "last_handshake": ts or None,
            "handshake_age": round(now - ts, 1) if ts else None,
            "rx_bytes": peer.get("rx_bytes"),
            "tx_bytes": peer.get("tx_bytes"),
            "endpoint": peer.get("endpoint"),
        }
    return peers


__all__ = [
    "WireGuardError",
    "check_key",
    "generate_private_key",
    "public_key",
    "write_secret_file",
    "read_private_key",
    "keypair_needs_regeneration",
    "keypair_diff",
    "ensure_keypair",
    "address_plan",
    "parse_endpoint",
    "render_home",
    "render_vps",
    "kernel_module_available",
    "choose_backend",
    "bring_up",
    "bring_down",
    "parse_show",
    "read_status",
    "tunnel_problem",
    "firewall_chain",
    "render_firewall",
    "apply_firewall",
    "remove_firewall",
    "ensure_unreachable_route",
    "remove_unreachable_route",
    "default_status_file",
    "status_document",
    "write_status_file",
    "read_status_file",
]
