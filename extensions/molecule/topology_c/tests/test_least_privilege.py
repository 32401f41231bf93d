"""Topology C (home only) after converge: least privilege and files, from a local
attacker's side (molecule verify; docs/security.md, "Least privilege" and "Files")."""

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

HOME = testinfra.get_host("docker://eymc-home")
HOME_IP = "198.18.91.2"
APP = "whoami.example.test"
LOG = "/var/log/envoyage/access.log"


@pytest.mark.parametrize("unit", ["envoyage-control", "envoyage-envoy"])
def test_every_unit_scores_below_the_goal(unit):
    assert_exposure_below_goal(HOME, unit)


def test_no_capability_in_the_control_plane_and_no_net_admin_anywhere():
    assert_no_capability(HOME, "envoyage-control")
    assert_only_net_bind_service(HOME, "envoyage-envoy")


def test_the_envoy_admin_socket_refuses_other_users():
    assert_admin_socket_is_the_envoys_alone(
        HOME,
        "/run/envoyage-envoy/admin.sock",
        "envoy",
        [NOBODY, "setpriv --reuid envoyage --regid envoyage --init-groups"],
    )


def test_a_share_link_token_in_the_query_reaches_no_access_log():
    assert_query_strings_not_logged(HOME_IP, APP, [(HOME, LOG)])


def test_another_user_cannot_read_the_access_log():
    assert_access_log_private(HOME, LOG, "envoy", "envoy")


def test_logrotate_keeps_the_access_log_private():
    assert_logrotate_keeps_the_mode(HOME, LOG, "envoy", "envoy", HOME_IP, APP)
