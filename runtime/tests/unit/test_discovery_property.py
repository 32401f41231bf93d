"""Random label sets never crash parsing or translation, nor yield a refused snapshot."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envoyage.discovery.containers import ContainerInfo, derive_services
from envoyage.discovery.labels import LABELS
from envoyage.xds.assemble import HomeSettings, assemble_home
from envoyage.xds.translate import TranslationCache

SETTINGS = HomeSettings("127.0.0.1", 8080, "/tmp/access.log")

interesting = st.sampled_from(
    [
        "true",
        "false",
        "1",
        "yes",
        "maybe",
        "",
        " ",
        "80",
        "0",
        "65536",
        "eighty",
        "-1",
        "a.example.com",
        "*.example.com",
        "a.example.com,b.example.com",
        "a.example.com,a.example.com",
        "*",
        "bad domain",
        "/",
        "/status",
        "/status interval=1s",
        "/s interval=1s timeout=5s",
        "tcp",
        "/s expect=200-299",
        "public",
        "vpn-only",
        "link-only",
        "none",
        "basic",
        "authentik",
        "envoyage-mesh",
        "bridge",
        "x" * 300,
        "ünïcode",
        "/app",
        "app",
        "\x00",
        "a.example.com:80",
    ]
)
label_values = st.one_of(interesting, st.text(max_size=40))
label_sets = st.dictionaries(
    st.sampled_from(LABELS + ("envoyage.other", "com.docker.compose.project", "com.docker.compose.service")),
    label_values,
    max_size=12,
)
networks = st.dictionaries(
    st.sampled_from(["bridge", "envoyage-mesh", "backend", "front"]),
    st.sampled_from(["172.17.0.2", "10.0.0.5", "", "10.0.0.6"]),
    max_size=3,
)
containers = st.lists(
    st.builds(
        lambda i, name, labels, nets, ports, mode: ContainerInfo(
            id=f"{i:064x}",
            name=name,
            labels={"envoyage.enable": "true", **labels},
            networks=nets,
            exposed_ports=ports,
            network_mode=mode,
        ),
        st.integers(0, 10**6),
        st.sampled_from(["app", "App_1", "web", "x" * 80, "-"]),
        label_sets,
        networks,
        st.sampled_from([(), ("80/tcp",), ("80/tcp", "443/tcp"), ("53/udp",)]),
        st.sampled_from(["default", "host", "bridge"]),
    ),
    max_size=6,
    unique_by=lambda c: c.id,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(containers)
def test_random_labels_never_break_translation(cs):
    services = derive_services(cs)
    for i, s in enumerate(services):
        s.first_seen = float(i)
        assert s.spec is not None or s.source_problems  # never silently dropped
    asm = assemble_home(services, SETTINGS, TranslationCache())  # raises if the validator refuses
    served = set(asm.served)
    for s in services:
        if s.spec is None:
            assert s.name not in served
