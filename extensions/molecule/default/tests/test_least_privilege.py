"""Topology A after converge: least privilege and files, from a local attacker's side
(molecule verify; docs/security.md, "Least privilege" and "Files")."""

import sys
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "common"))
from least_privilege import (  # noqa: E402
    NOBODY,
    assert_access_log_private,
    assert_admin_socket_is_the_envoys_alone,
    assert_exposure_below_goal,
    assert_logrotate_keeps_the_mode,
    assert_no_capability,
    assert_only_net_bind_service,
    assert_query_strings_not_logged,
)

HOME = testinfra.get_host("docker://eym-home")
VPS = testinfra.get_host("docker://eym-vps")
HOME_IP, VPS_IP = "198.18.90.2", "198.18.90.3"
APP = "whoami.example.test"
LOG = "/var/log/envoyage/access.log"
# a member of the home Envoy's group (the control plane's user): it may enter the socket's
# directory, and only the socket's own mode stops it
ENVOY_GROUP_MEMBER = "setpriv --reuid envoyage --regid envoyage --init-groups"


@pytest.mark.parametrize("host,unit", [(HOME, "envoyage-control"), (HOME, "envoyage-envoy"), (VPS, "envoyage-edge")])
def test_every_unit_scores_below_the_goal(host, unit):
    assert_exposure_below_goal(host, unit)


def test_the_control_plane_holds_no_capability():
    assert_no_capability(HOME, "envoyage-control")


@pytest.mark.parametrize("host,unit", [(HOME, "envoyage-envoy"), (VPS, "envoyage-edge")])
def test_the_envoys_hold_only_net_bind_service(host, unit):
    assert_only_net_bind_service(host, unit)


def test_the_home_envoy_admin_socket_refuses_other_users():
    assert_admin_socket_is_the_envoys_alone(
        HOME, "/run/envoyage-envoy/admin.sock", "envoy", [NOBODY, ENVOY_GROUP_MEMBER]
    )


def test_the_vps_envoy_admin_socket_refuses_other_users():
    assert_admin_socket_is_the_envoys_alone(VPS, "/run/envoyage/envoy-admin.sock", "envoyage-edge", [NOBODY])


def test_a_share_link_token_in_the_query_reaches_no_access_log():
    assert_query_strings_not_logged(VPS_IP, APP, [(VPS, LOG), (HOME, LOG)])


@pytest.mark.parametrize("host,owner,group", [(HOME, "envoy", "envoy"), (VPS, "envoyage-edge", "envoyage-edge")])
def test_another_user_cannot_read_the_access_log(host, owner, group):
    assert_access_log_private(host, LOG, owner, group)


@pytest.mark.parametrize(
    "host,owner,group,address", [(HOME, "envoy", "envoy", HOME_IP), (VPS, "envoyage-edge", "envoyage-edge", VPS_IP)]
)
def test_logrotate_keeps_the_access_log_private(host, owner, group, address):
    assert_logrotate_keeps_the_mode(host, LOG, owner, group, address, APP)
