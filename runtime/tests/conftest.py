from __future__ import annotations

import pytest
from support.helpers import Upstream, make_config, rmtree, short_tmpdir


@pytest.fixture
def workdir():
    path = short_tmpdir()
    yield path
    rmtree(path)


@pytest.fixture
def config(workdir):
    return make_config(workdir)


@pytest.fixture
def upstreams():
    """Factory of named upstream apps, closed after the test."""
    made: list[Upstream] = []

    def make(name: str) -> Upstream:
        up = Upstream(name)
        made.append(up)
        return up

    yield make
    for up in made:
        up.close()
