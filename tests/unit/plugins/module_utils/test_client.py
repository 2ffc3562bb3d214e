# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client against libvirt's in-process test:///default driver."""
from __future__ import annotations

from urllib.parse import urlparse

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils._client import LibvirtClient, is_local_uri, resolve_uri, uri_host
from ansible_collections.kvmops.virt.plugins.module_utils._errors import ConnectionFailed, NotFound, OperationFailed


def test_uri_resolution(monkeypatch):
    monkeypatch.delenv("LIBVIRT_DEFAULT_URI", raising=False)
    assert resolve_uri(None) == "qemu:///system"
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "test:///default")
    assert resolve_uri(None) == "test:///default"
    assert resolve_uri("qemu:///session") == "qemu:///session"


def test_lookups_return_none_when_missing():
    with LibvirtClient("test:///default") as client:
        assert client.lookup_domain("test").name() == "test"
        assert client.lookup_domain("no-such-guest") is None
        assert client.lookup_network("default") is not None
        assert client.lookup_network("no-such-net") is None
        assert client.lookup_pool("default-pool") is not None
        assert client.lookup_pool("nope") is None


def test_require_names_the_option_and_uri():
    with LibvirtClient("test:///default") as client:
        with pytest.raises(NotFound) as err:
            client.require_pool("missing", option="disks[0].pool")
    assert err.value.msg == "disks[0].pool: storage pool 'missing' does not exist on uri 'test:///default'"
    assert err.value.option == "disks[0].pool"


def test_errors_are_mapped_with_code_and_uri():
    with LibvirtClient("test:///default") as client:
        dom = client.lookup_domain("test")
        with pytest.raises(OperationFailed) as err:
            with client.errors("starting guest 'test'"):
                dom.create()  # already running
    assert err.value.uri == "test:///default"
    assert err.value.code is not None
    assert err.value.msg.startswith("starting guest 'test' failed on uri 'test:///default': ")


def test_unreachable_uri_is_a_connection_error():
    client = LibvirtClient("qemu:///system?socket=/nonexistent/kvmops/sock")
    with pytest.raises(ConnectionFailed) as err:
        client.open()
    assert "qemu:///system?socket=/nonexistent/kvmops/sock" in err.value.msg
    assert err.value.option == "uri"
    client.close()


def test_versions():
    with LibvirtClient("test:///default") as client:
        lib, hv_type, _hv = client.versions()
    assert hv_type == "TEST"
    assert lib.count(".") == 2


URIS = [
    "qemu:///system",
    "qemu:///session",
    "test:///default",
    "qemu+ssh://root@Host.Example:2222/system?keyfile=/root/.ssh/id",
    "qemu+ssh://host/system",
    "qemu+tcp://[::1]/system",
    "qemu+tls://10.0.0.1:16514/system",
    "qemu+ssh://user@[fe80::1%25eth0]:22/system",
    "qemu://localhost/system",
    "qemu+unix:///system?socket=/run/libvirt/libvirt-sock",
    "lxc:///",
    "qemu:/system",
]


@pytest.mark.parametrize("uri", URIS)
def test_uri_host_agrees_with_urllib(uri):
    assert uri_host(uri) == (urlparse(uri).hostname or "")


def test_uri_host_of_a_malformed_uri_is_empty():
    # urllib raises ValueError here; the inventory falls back to the hypervisor's own name.
    assert uri_host("qemu+ssh://[::1/system") == ""


@pytest.mark.parametrize("uri, local", [
    ("qemu:///system", True),
    ("qemu:///session", True),
    ("test:///default", True),
    ("qemu+ssh://root@kvm1/system", False),
    ("qemu+tcp://hv1/system", False),
    ("qemu://localhost/system", True),
    ("qemu+tcp://127.0.0.1/system", True),
    ("qemu+tcp://[::1]/system", True),
    ("qemu+tls://10.0.0.1/system", False),
])
def test_is_local_uri(uri, local):
    assert is_local_uri(uri) is local
