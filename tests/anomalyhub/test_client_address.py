"""Whose address a request has (issue 22, case 4): X-Forwarded-For counts only from TRUSTED_PROXIES."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import strategies as st

from anomalyhub.lib.client_address import TrustedProxies, client_address, trusted_networks

PROXIES = trusted_networks(("10.0.0.0/8", "fd00::/8"))
ipv4 = st.ip_addresses(v=4).map(str)


@pytest.mark.parametrize(("peer", "forwarded", "client"), [
    ("203.0.113.9", "1.2.3.4", "203.0.113.9"),                   # not a proxy of ours: header ignored
    ("10.0.0.1", "198.51.100.7", "198.51.100.7"),                # our proxy names the client
    ("10.0.0.1", "1.2.3.4, 198.51.100.7", "198.51.100.7"),       # what the client wrote itself is left of it
    ("10.0.0.1", "1.2.3.4, 198.51.100.7, 10.0.0.2", "198.51.100.7"),  # through two of our proxies
    ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),              # every hop ours: the farthest
    ("10.0.0.1", "1.2.3.4, not-an-ip", "10.0.0.1"),              # garbage from the proxy side: stop there
    ("10.0.0.1", "", "10.0.0.1"),
    ("fd00::1", "2001:db8::5", "2001:db8::5"),
    (None, "1.2.3.4", None),
])
def test_client_address(peer, forwarded, client):
    assert client_address(peer, forwarded, PROXIES) == client


@given(peer=ipv4, forwarded=st.lists(ipv4, max_size=5).map(", ".join))
def test_with_no_trusted_proxies_the_header_never_counts(peer, forwarded):
    assert client_address(peer, forwarded, ()) == peer


@given(client=ipv4.filter(lambda a: not a.startswith("10.")), forged=st.lists(ipv4, max_size=4))
def test_what_a_client_writes_never_hides_it(client, forged):
    """Whatever a client puts in the header, our proxy's appended entry (its real address) wins."""
    assert client_address("10.0.0.1", ", ".join([*forged, client]), PROXIES) == client


def test_a_bad_setting_is_refused_at_once():
    with pytest.raises(ImproperlyConfigured, match="TRUSTED_PROXIES"):
        trusted_networks(("10.0.0.0/8", "proxy.internal"))


@pytest.mark.parametrize(("trusted", "peer", "client"), [([], "127.0.0.1", "127.0.0.1"),
                                                        (["127.0.0.0/8"], "127.0.0.1", "198.51.100.7")])
async def test_the_asgi_edge_rewrites_the_scope(settings, trusted, peer, client):
    settings.TRUSTED_PROXIES = trusted
    seen = {}

    async def app(scope, receive, send):
        seen.update(scope)

    scope = {"type": "http", "client": (peer, 5000), "headers": [(b"x-forwarded-for", b"1.1.1.1, 198.51.100.7")]}
    await TrustedProxies(app)(scope, None, None)
    assert seen["client"][0] == client
