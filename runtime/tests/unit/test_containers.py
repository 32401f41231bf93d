"""Containers -> services: addresses, ports, replicas, naming (pure)."""

from envoyage.discovery.containers import ContainerInfo, derive_services

LBL = {"envoyage.enable": "true", "envoyage.domain": "app.example.com"}


def c(cid="a" * 64, name="app", labels=None, networks=None, ports=("80/tcp",), mode="default", running=True):
    return ContainerInfo(
        id=cid,
        name=name,
        labels=dict(LBL if labels is None else labels),
        networks={"bridge": "172.17.0.2"} if networks is None else networks,
        exposed_ports=tuple(ports),
        network_mode=mode,
        running=running,
    )


def one(*containers):
    (svc,) = derive_services(containers)
    return svc


def test_single_network_and_single_exposed_port():
    s = one(c())
    assert s.name == "app" and [str(u) for u in s.spec.upstreams] == ["172.17.0.2:80"] and s.source_problems == []
    assert s.origin == "container:" + "a" * 64 and s.spec.source == "docker"


def test_mesh_network_wins_then_label_then_only():
    nets = {"front": "10.1.0.2", "envoyage-mesh": "10.9.0.2"}
    assert str(one(c(networks=nets)).spec.upstreams[0]) == "10.9.0.2:80"
    nets = {"front": "10.1.0.2", "back": "10.2.0.2"}
    s = one(c(labels={**LBL, "envoyage.network": "back"}, networks=nets))
    assert str(s.spec.upstreams[0]) == "10.2.0.2:80"
    s = one(c(networks=nets))
    assert s.spec is None and s.source_problems == [
        "container is attached to several networks (back, front); set envoyage.network"
    ]
    s = one(c(labels={**LBL, "envoyage.network": "other"}, networks=nets))
    assert s.spec is None and "not attached to network 'other' (attached: back, front)" in s.source_problems[0]


def test_host_network_uses_loopback():
    assert str(one(c(mode="host", networks={"host": ""})).spec.upstreams[0]) == "127.0.0.1:80"


def test_ports():
    assert one(c(labels={**LBL, "envoyage.port": "3000"}, ports=())).spec.upstreams[0].port == 3000
    s = one(c(ports=()))
    assert s.spec is None and "exposes no TCP port; set envoyage.port" in s.source_problems[0]
    s = one(c(ports=("80/tcp", "443/tcp")))
    assert s.spec is None and "several ports (80/tcp, 443/tcp); set envoyage.port" in s.source_problems[0]


def test_compose_replicas_are_one_service():
    compose = {**LBL, "com.docker.compose.project": "shop", "com.docker.compose.service": "web"}
    s = one(
        c("b" * 64, "shop-web-2", compose, {"shop_default": "10.0.0.3"}),
        c("a" * 64, "shop-web-1", compose, {"shop_default": "10.0.0.2"}),
    )
    assert s.name == "shop-web"
    assert sorted(str(u) for u in s.spec.upstreams) == ["10.0.0.2:80", "10.0.0.3:80"]
    assert s.origin == "container:" + "a" * 64  # the lowest container id


def test_replica_with_a_problem_does_not_stop_the_others():
    compose = {**LBL, "com.docker.compose.project": "p", "com.docker.compose.service": "s"}
    s = one(c("a" * 64, "p-s-1", compose, {"n": "10.0.0.2"}), c("b" * 64, "p-s-2", compose, {}))
    assert [str(u) for u in s.spec.upstreams] == ["10.0.0.2:80"]
    assert s.source_problems == ["p-s-2: container has no network; attach it to one (or to envoyage-mesh)"]


def test_bad_labels_mean_not_servable_but_listed():
    s = one(c(labels={**LBL, "envoyage.port": "eighty"}))
    assert s.spec is None and s.source_problems == ["envoyage.port: 'eighty' is not a port number"]
    assert s.detail["domains"] == ["app.example.com"]


def test_stopped_and_unlabelled_and_disabled_are_ignored():
    assert derive_services([c(running=False), c(labels={}), c(labels={**LBL, "envoyage.enable": "false"})]) == []


def test_names_are_sanitized():
    assert one(c(name="My_App.v2")).name == "my-app-v2"
    assert one(c(labels={**LBL, "envoyage.name": "custom"})).name == "custom"


def test_default_domain_serves_name_dot_domain_unless_a_domain_is_labelled():
    plain = ContainerInfo(
        id="p" * 12,
        name="nextcloud",
        labels={"envoyage.enable": "true"},
        networks={"bridge": "172.17.0.5"},
        exposed_ports=("80/tcp",),
    )
    named = ContainerInfo(
        id="n" * 12,
        name="x",
        labels={"envoyage.enable": "true", "envoyage.name": "photos"},
        networks={"bridge": "172.17.0.6"},
        exposed_ports=("80/tcp",),
    )
    own = ContainerInfo(
        id="o" * 12,
        name="wiki",
        labels={"envoyage.enable": "true", "envoyage.domain": "w.other.org"},
        networks={"bridge": "172.17.0.7"},
        exposed_ports=("80/tcp",),
    )
    by_name = {s.name: s for s in derive_services([plain, named, own], default_domain="example.org")}
    assert list(by_name["nextcloud"].spec.domains) == ["nextcloud.example.org"]
    assert list(by_name["photos"].spec.domains) == ["photos.example.org"]
    assert list(by_name["wiki"].spec.domains) == ["w.other.org"]
    # replicas of a service without envoyage.domain are one service, not "labels differ"
    replica = ContainerInfo(
        id="q" * 12,
        name="nextcloud-2",
        labels={"envoyage.enable": "true", "envoyage.name": "nextcloud"},
        networks={"bridge": "172.17.0.8"},
        exposed_ports=("80/tcp",),
    )
    first = ContainerInfo(
        id="a" * 12,
        name="nextcloud-1",
        labels=dict(replica.labels),
        networks={"bridge": "172.17.0.9"},
        exposed_ports=("80/tcp",),
    )
    (both,) = derive_services([first, replica], default_domain="example.org")
    assert both.source_problems == [] and list(both.spec.domains) == ["nextcloud.example.org"]
    assert len(both.spec.upstreams) == 2
    # without a default domain the label stays required, with the same problem as before
    bare = {s.name: s for s in derive_services([plain])}["nextcloud"]
    assert bare.spec is None and any(p.startswith("envoyage.domain: missing") for p in bare.source_problems)
