"""The client's configuration, its own session and its connection pool."""

from __future__ import annotations

import json
import logging
import shutil
import ssl
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from requests.adapters import HTTPAdapter

from django_mitto.client import MittoClient
from django_mitto.exceptions import MittoAPIError, MittoConfigurationError
from tests.canned import CannedServer, Reply
from tests.conftest import require_part
from tests.test_client import KEY, make_client

OK = {"id": "x", "responseCode": 0}


def test_an_unknown_response_format_is_refused_naming_the_setting_and_its_values() -> None:
    with pytest.raises(MittoConfigurationError) as info:
        MittoClient(
            KEY, api_url="http://127.0.0.1:9", timeout=5, response_format="yaml", test_mode=False
        )
    assert str(info.value) == 'MITTO_RESPONSE_FORMAT must be "json" or "xml".'


def test_the_accept_header_asks_for_the_format_the_client_reads(canned) -> None:
    canned.reply(Reply(body=OK), Reply(body=OK))
    make_client(canned.url, response_format="json").send("41791234567", "Hi", sender="Shop")
    make_client(canned.url, response_format="xml").send("41791234567", "Hi", sender="Shop")
    # Header names are case-insensitive: only the value is the client's to choose.
    accepts = [
        {name.lower(): value for name, value in request["headers"].items()}["accept"]
        for request in canned.requests
    ]
    assert accepts == ["application/json", "application/xml"]


def test_options_given_empty_or_false_are_left_out_of_the_request(canned) -> None:
    canned.reply(Reply(body=OK))
    result = make_client(canned.url, test_mode=False).send(
        "41791234567",
        "Hi",
        sender="Shop",
        reference="",
        udh="",
        callback="",
        flash=False,
        test=False,
    )
    assert canned.requests[0]["body"] == {
        "from": "Shop",
        "to": "41791234567",
        "text": "Hi",
        "type": "GSM",
    }
    assert result.test is False


def test_a_session_given_to_the_client_does_not_follow_a_redirect(canned) -> None:
    # A 307 keeps the method and the body: followed, it would carry the key to the new address.
    canned.reply(
        Reply(307, "", headers={"Location": f"{canned.url}/elsewhere/sms"}),
        Reply(body={"id": "followed", "responseCode": 0}),
    )
    client = make_client(canned.url, session=requests.Session())
    with pytest.raises(MittoAPIError) as info:
        client.send("41791234567", "Hi", sender="Shop")
    assert info.value.status_code == 307
    assert [request["path"] for request in canned.requests] == ["/sms"]


def test_a_redirect_to_a_malformed_address_is_an_api_error_naming_it(canned) -> None:
    canned.reply(Reply(301, "", headers={"Location": "http://["}))
    with pytest.raises(MittoAPIError) as info:
        make_client(canned.url).send("41791234567", "Hi", sender="Shop")
    assert info.value.status_code == 301
    assert str(info.value) == (
        "Mitto answered HTTP 301 (a redirect to 'http://['); set MITTO_API_URL to the final "
        "address."
    )


def test_a_redirect_to_a_malformed_address_is_an_api_error_for_a_session_given_and_the_probe(
    canned,
) -> None:
    # requests reads where a redirect leads even when it does not follow it, and raises a
    # ValueError (no RequestException) for an address it cannot read.
    expected = (
        "Mitto answered a redirect to an address that is not valid (Invalid IPv6 URL) on POST "
        "/sms; set MITTO_API_URL to the final address."
    )
    canned.reply(Reply(301, "", headers={"Location": "http://["}))
    with pytest.raises(MittoAPIError) as info:
        make_client(canned.url, session=requests.Session()).send("41791234567", "Hi", sender="S")
    assert str(info.value) == expected
    canned.reply(Reply(301, "", headers={"Location": "http://["}))
    probe = make_client(canned.url).probe("41791234567", "Hi", sender="Shop", test=False)
    assert (probe.reached, probe.test) == (True, False)
    assert isinstance(probe.error, MittoAPIError)
    assert str(probe.error) == expected


def test_no_credentials_from_a_netrc_file_go_to_mitto(canned, monkeypatch, tmp_path) -> None:
    # A netrc "default" entry applies to every host; the key header is Mitto's only credential.
    netrc = tmp_path / "netrc"
    netrc.write_text("default login someone password netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    canned.reply(Reply(body=OK), Reply(body=OK))
    client = make_client(canned.url)
    client.send("41791234567", "Hi", sender="Shop")
    probe = client.probe("41791234567", "Hi", sender="Shop")
    assert probe.reached is True
    assert len(canned.requests) == 2
    for request in canned.requests:
        assert "authorization" not in {name.lower() for name in request["headers"]}


@pytest.fixture
def tls_files(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    require_part(shutil.which("openssl") is not None, "openssl makes the test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_pool_size_connections_stay_open_for_as_many_sends_at_once(
    scheme, monkeypatch, caplog, request
) -> None:
    # More than requests' default pool of 10: each send of a round holds its connection until
    # all of the round have arrived, so a round needs that many connections at once.
    size = 12
    server = CannedServer()
    url = server.url
    if scheme == "https":
        cert, key = request.getfixturevalue("tls_files")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
        url = url.replace("http://", "https://")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    client = make_client(url, pool_size=size)

    def round_of_sends() -> set[int]:
        barrier = threading.Barrier(size, timeout=10)
        server.reply(*[Reply(body=OK, before=barrier.wait) for _ in range(size)])
        done = len(server.requests)
        with ThreadPoolExecutor(size) as pool:
            ids = list(
                pool.map(lambda _: client.send("41791234567", "Hi", sender="S").id, range(size))
            )
        assert ids == ["x"] * size
        return {sent["client_port"] for sent in server.requests[done:]}

    with server, caplog.at_level(logging.WARNING, logger="urllib3"):
        first = round_of_sends()
        second = round_of_sends()
        client.close()
    assert len(first) == size
    assert second == first  # no connection was closed and opened again
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_the_client_hands_its_session_settings_to_the_adapter_and_never_skips_tls_checks(
    canned,
) -> None:
    # The client's own session goes straight to its adapter: what requests would merge from
    # the session (CA bundle, client certificate, proxies) must reach the adapter all the same.
    seen: list[dict] = []

    class Recording(HTTPAdapter):
        def send(self, request, **kwargs):  # type: ignore[override]
            seen.append(kwargs)
            return super().send(request, **{**kwargs, "verify": True, "cert": None})

    canned.reply(Reply(body=OK), Reply(body=OK))
    client = make_client(canned.url, timeout=4)
    client.session.mount("http://", Recording())
    client.session.verify = "/etc/ssl/our-ca.pem"
    client.session.cert = ("/etc/ssl/client.pem", "/etc/ssl/client.key")
    client.send("41791234567", "Hi", sender="Shop")
    # A session whose verify was set to None still checks certificates.
    client.session.verify = None  # type: ignore[assignment]
    client.send("41791234567", "Hi", sender="Shop")
    assert [(kw["verify"], kw["cert"], kw["timeout"]) for kw in seen] == [
        ("/etc/ssl/our-ca.pem", ("/etc/ssl/client.pem", "/etc/ssl/client.key"), 4.0),
        (True, ("/etc/ssl/client.pem", "/etc/ssl/client.key"), 4.0),
    ]


def test_an_option_that_is_not_a_number_for_json_is_refused_before_anything_is_sent(canned) -> None:
    with pytest.raises(ValueError, match="JSON"):
        make_client(canned.url).send("41791234567", "Hi", sender="Shop", validity=float("nan"))
    assert canned.requests == []


@pytest.mark.parametrize("body", [[OK], "SMS sent", 7])
def test_a_json_answer_that_is_not_an_object_is_an_api_error_quoting_it(canned, body) -> None:
    canned.reply(Reply(body=body) if isinstance(body, list) else Reply(body=f"{body!r}"))
    with pytest.raises(MittoAPIError) as info:
        make_client(canned.url).send("41791234567", "Hi", sender="Shop")
    assert str(info.value).startswith("Mitto answered HTTP 200 with a body that is not valid JSON")
    assert info.value.response_text == (json.dumps(body) if isinstance(body, list) else repr(body))
    assert info.value.status_code == 200


def test_an_answer_without_a_response_code_keeps_its_text(canned) -> None:
    canned.reply(Reply(body={"id": "x", "responseText": "queued"}))
    with pytest.raises(MittoAPIError) as info:
        make_client(canned.url).send("41791234567", "Hi", sender="Shop")
    assert info.value.response_text == '{"id": "x", "responseText": "queued"}'
    assert str(info.value).startswith("Mitto answered HTTP 200 without a responseCode")
