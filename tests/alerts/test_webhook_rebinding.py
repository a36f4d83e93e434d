"""Webhook delivery connects to the address its guard checked (issue 22, case 15: DNS rebinding).

A fake resolver stands in for a rebinding DNS server: its first answer for the host is the
receiver the operator allowed (127.0.0.1), every later one an "internal" service (127.0.0.2, a
second receiver on the same port). Resolving again to connect would reach the internal one."""

import datetime
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from alerts.transports import webhook
from alerts.transports.base import TransportError

HOST = "hooks.rebind.test"
real_getaddrinfo = socket.getaddrinfo


class Receiver:
    def __init__(self, address: str, port: int = 0, tls: ssl.SSLContext | None = None):
        self.requests: list[dict] = []
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                rec.requests.append({"host": self.headers.get("Host")})
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer((address, port), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def rebinding_dns(monkeypatch):
    """answers[0] for the first lookup of HOST, answers[1] for every later one."""
    state = {"answers": ["127.0.0.1", "127.0.0.2"], "lookups": 0}

    def getaddrinfo(host, port, *args, **kwargs):
        if host != HOST:
            return real_getaddrinfo(host, port, *args, **kwargs)
        state["lookups"] += 1
        address = state["answers"][min(state["lookups"], 2) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return state


@pytest.fixture
def receivers():
    allowed = Receiver("127.0.0.1")
    internal = Receiver("127.0.0.2", allowed.port)
    yield allowed, internal
    allowed.close()
    internal.close()


@pytest.fixture
def guard_on(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_IPS = False
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]  # an address the operator allows, not the name


def _post(url):
    return webhook.post(url, body=b"{}", msg_id="msg_1", secrets=["whsec_" + "a" * 32])


def test_the_post_goes_to_the_address_that_was_checked(guard_on, rebinding_dns, receivers):
    allowed, internal = receivers
    sent = _post(f"http://{HOST}:{allowed.port}/hook")
    assert sent.status_code == 204
    assert rebinding_dns["lookups"] == 1
    assert allowed.requests == [{"host": f"{HOST}:{allowed.port}"}] and internal.requests == []


def test_a_public_answer_then_a_private_one_connects_to_the_public_one(settings, rebinding_dns, receivers):
    """The attack itself: the guard sees a public address, the connection must go there too, never to
    the private one the name resolves to a moment later. pytest-socket (--allow-hosts=127.0.0.1)
    refuses the connection to the public address before anything leaves the machine, and its
    error names the address connected to."""
    from pytest_socket import SocketConnectBlockedError

    settings.WEBHOOK_ALLOW_PRIVATE_IPS, settings.WEBHOOK_ALLOWED_HOSTS = False, []
    allowed, internal = receivers
    rebinding_dns["answers"] = ["93.184.216.34", "127.0.0.2"]
    with pytest.raises(SocketConnectBlockedError, match="93.184.216.34"):
        _post(f"http://{HOST}:{allowed.port}/hook")
    assert rebinding_dns["lookups"] == 1 and internal.requests == []


def test_a_refused_answer_is_never_connected_to(guard_on, rebinding_dns, receivers):
    allowed, internal = receivers
    rebinding_dns["answers"] = ["127.0.0.2", "127.0.0.2"]
    with pytest.raises(TransportError) as refused:
        _post(f"http://{HOST}:{allowed.port}/hook")
    assert refused.value.permanent and "127.0.0.2" in refused.value.message
    assert internal.requests == [] and allowed.requests == []


def _certificate(tmp_path):
    """A CA and a certificate for HOST signed by it; returns (ca_file, server context)."""
    def key():
        return ec.generate_private_key(ec.SECP256R1())

    now = datetime.datetime.now(datetime.UTC)
    ca_key, leaf_key = key(), key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
            .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(2).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return ca_file, context


def test_tls_still_names_the_host(guard_on, rebinding_dns, tmp_path, monkeypatch):
    """Connected by address, the TLS handshake still sends the name (SNI) and checks the certificate
    against it, and the Host header names it (without the scheme's own port)."""
    ca_file, context = _certificate(tmp_path)
    names = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # what ssl.create_default_context() trusts
    receiver = Receiver("127.0.0.1", tls=context)
    try:
        assert _post(f"https://{HOST}:{receiver.port}/hook").status_code == 204
    finally:
        receiver.close()
    assert names == [HOST] and receiver.requests == [{"host": f"{HOST}:{receiver.port}"}]
    assert rebinding_dns["lookups"] == 1
