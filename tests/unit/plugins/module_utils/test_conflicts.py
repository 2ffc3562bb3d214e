# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lost races: libvirt errors that mean "another client got there first" become
``Conflict``, and the run loop converges again from the state it reads then."""
from __future__ import annotations

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils import _module
from ansible_collections.kvmops.virt.plugins.module_utils._client import LibvirtClient
from ansible_collections.kvmops.virt.plugins.module_utils._errors import Conflict, OperationFailed

NET_XML = "<network><name>kvmops-conflict</name><bridge name='kvmcfl0'/></network>"


def test_starting_a_running_guest_is_a_conflict():
    with LibvirtClient("test:///default") as client:
        dom = client.lookup_domain("test")
        with pytest.raises(Conflict) as err:
            client.call("starting guest 'test'", dom.create)
    assert isinstance(err.value, OperationFailed)
    assert err.value.uri == "test:///default"


def test_defining_a_taken_name_and_starting_an_active_network_are_conflicts():
    with LibvirtClient("test:///default") as client:
        net = client.call("defining", client.conn.networkDefineXML, NET_XML)
        try:
            client.call("starting", net.create)
            with pytest.raises(Conflict):
                client.call("starting", net.create)
            # the same name with another UUID: libvirt says it already exists
            other = NET_XML.replace("<name>", "<uuid>0f0e0d0c-0b0a-0908-0706-050403020100</uuid><name>")
            with pytest.raises(Conflict) as err:
                client.call("defining network 'kvmops-conflict'", client.conn.networkDefineXML, other)
            assert "kvmops-conflict" in err.value.msg
        finally:
            net.destroy()
            net.undefine()


def test_other_failures_are_not_conflicts():
    with LibvirtClient("test:///default") as client:
        with pytest.raises(OperationFailed) as err:
            client.call("defining", client.conn.networkDefineXML, "<network><name>x</name><forward mode='nope'/></network>")
    assert not isinstance(err.value, Conflict)


class _Module:
    params = {}
    check_mode = False


def _manager(outcomes, made):
    class Flaky(_module.Manager):
        def __init__(self, module, client):
            super().__init__(module, client)
            made.append(self)

        def plan(self):
            outcome = outcomes.pop(0)
            if outcome is not None:
                raise outcome
            self.act("converge", lambda: None)
    return Flaky


def test_a_lost_race_is_planned_again_with_a_fresh_manager(monkeypatch):
    monkeypatch.setattr(_module.time, "sleep", lambda seconds: None)
    made = []
    flaky = _manager([Conflict("exists already"), Conflict("is already active"), None], made)
    result = _module.run_managed(_Module(), flaky, client=None)
    assert result["changed"] is True and result["actions"] == ["converge"]
    assert len(made) == 3 and len(set(map(id, made))) == 3


def test_a_conflict_that_persists_is_reported(monkeypatch):
    monkeypatch.setattr(_module.time, "sleep", lambda seconds: None)
    made = []
    flaky = _manager([Conflict("exists already %d" % n) for n in range(_module.CONFLICT_ATTEMPTS)], made)
    with pytest.raises(Conflict) as err:
        _module.run_managed(_Module(), flaky, client=None)
    assert str(err.value) == "exists already %d" % (_module.CONFLICT_ATTEMPTS - 1)
    assert len(made) == _module.CONFLICT_ATTEMPTS


def test_other_errors_are_not_retried():
    made = []
    flaky = _manager([OperationFailed("broken"), None], made)
    with pytest.raises(OperationFailed):
        _module.run_managed(_Module(), flaky, client=None)
    assert len(made) == 1
