"""The Alpha Vantage fake's conformance test: the official `alpha_vantage` library must parse every
kind of answer the fake serves (JSON and CSV intraday bars, extended hours or not, and the
"Error Message" / "Information" / "Note" bodies it must recognise as errors).

The library has no base-URL option: it always asks https://www.alphavantage.co/query. Its public
`proxy` option (requests' proxies) sends that through a local CONNECT proxy, which answers TLS with
a certificate made here for www.alphavantage.co (trusted through REQUESTS_CA_BUNDLE for this test
only) and hands the request to the fake. Nothing leaves 127.0.0.1: the client connects only to the
proxy, and the proxy only to the fake.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import socketserver
import ssl
import threading
from datetime import date

import pytest
from alpha_vantage.timeseries import TimeSeries
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .fakes import AV_BURST, AV_DAILY, AV_ERROR, AV_NOTE, FakeAlphaVantage, session_minutes

HOST = "www.alphavantage.co"
DAY = date(2024, 3, 12)


def _certificate(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "av.pem", tmp_path / "av.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _pipe(source, sink):
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _ConnectProxy(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext, upstream_port: int):
        self.tls, self.upstream_port = tls, upstream_port
        super().__init__(("127.0.0.1", 0), _ConnectHandler)


class _ConnectHandler(socketserver.StreamRequestHandler):
    def handle(self):
        request_line = self.rfile.readline().decode()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        assert request_line.startswith(f"CONNECT {HOST}:443 "), request_line
        self.connection.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        client = self.server.tls.wrap_socket(self.connection, server_side=True)
        upstream = socket.create_connection(("127.0.0.1", self.server.upstream_port))
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join(5)


@pytest.fixture
def library(tmp_path, monkeypatch):
    """(the fake, a TimeSeries factory whose requests reach the fake)."""
    fake = FakeAlphaVantage().start()
    fake.minutes["IBM"] = session_minutes(DAY)
    cert_file, key_file = _certificate(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_file, key_file)
    proxy = _ConnectProxy(tls, fake.server.server_address[1])
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_file))
    proxies = {"https": f"http://127.0.0.1:{proxy.server_address[1]}"}
    try:
        yield fake, lambda **kw: TimeSeries(key=FakeAlphaVantage.API_KEY, proxy=proxies, **kw)
    finally:
        proxy.shutdown()
        proxy.server_close()
        fake.stop()


def test_the_library_parses_json_intraday_with_and_without_extended_hours(library):
    fake, series = library
    data, meta = series(output_format="json").get_intraday("IBM", interval="1min", outputsize="full")
    assert len(data) == 960 and "2024-03-12 04:00:00" in data and "2024-03-12 19:59:00" in data
    assert meta["2. Symbol"] == "IBM" and data["2024-03-12 09:30:00"]["4. close"]
    data, _ = series(output_format="json").get_intraday("IBM", interval="1min", outputsize="full",
                                                        extended_hours="false")
    assert len(data) == 390 and min(data) == "2024-03-12 09:30:00"
    assert fake.requests[-1][1]["extended_hours"] == "false"


def test_the_library_parses_csv_intraday(library):
    _, series = library
    rows, _ = series(output_format="csv").get_intraday("IBM", interval="1min", outputsize="full",
                                                       extended_hours="false")
    rows = list(rows)
    assert rows[0] == ["timestamp", "open", "high", "low", "close", "volume"] and len(rows) == 391


@pytest.mark.parametrize("body", [{"Error Message": AV_ERROR}, {"Information": AV_BURST},
                                  {"Information": AV_DAILY}, {"Note": AV_NOTE}],
                         ids=["invalid call", "burst", "daily", "per-minute note"])
def test_the_library_reads_the_fakes_error_bodies_as_errors(library, body):
    fake, series = library
    fake.scripted = [(200, {"Content-Type": "application/json"}, json.dumps(body))]
    with pytest.raises(ValueError, match=next(iter(body.values()))[:30]):
        series(output_format="json").get_intraday("IBM", interval="1min")
