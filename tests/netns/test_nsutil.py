import os

from tests import nsutil


def test_namespaces_are_created_and_removed(netns):
    name = netns("probe")
    assert name in nsutil.list_namespaces()
    out = nsutil.ip("-6", "addr", "show", "dev", "lo", ns=name).stdout
    assert "::1" in out
    netns.cleanup()
    assert name not in nsutil.list_namespaces()


def test_inside_switches_only_for_the_block(netns):
    name = netns("probe")
    before = os.readlink("/proc/thread-self/ns/net")
    with nsutil.inside(name):
        during = os.readlink("/proc/thread-self/ns/net")
    after = os.readlink("/proc/thread-self/ns/net")
    assert during != before
    assert after == before
    assert os.stat(f"/run/netns/{name}").st_ino == int(during.split("[")[1].rstrip("]"))
