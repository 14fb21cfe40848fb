"""The standard-library WebSocket client against the websockets package: its frames and handshake key,
and a hold against a real websockets server."""
from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader
from websockets.sync.server import serve
from websockets.utils import accept_key as library_accept_key

from ansible_collections.emp.deploy.plugins.module_utils._websocket import (
    MAX_PAYLOAD,
    OP_PING,
    FrameReader,
    WebSocketClient,
    WebSocketError,
    accept_key,
    encode_frame,
    ws_url_problem,
    ws_where,
)


def test_accept_key_is_the_rfc_example_and_the_library_value():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 section 1.3
    assert accept_key("OV8R1Jbu962SrcVJDQrcDw==") == library_accept_key("OV8R1Jbu962SrcVJDQrcDw==")


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536])
def test_server_frames_of_every_length_form_fed_byte_by_byte(size):
    payload = bytes(index % 251 for index in range(size))
    wire = Frame(Opcode.BINARY, payload).serialize(mask=False, extensions=[])
    reader = FrameReader()
    frames = []
    for index in range(0, len(wire), 997):
        frames += reader.feed(wire[index:index + 997])
    assert frames == [(True, Opcode.BINARY.value, payload)]


def library_parse(wire: bytes) -> Frame:
    """A client frame as a websockets server reads it (it insists on the mask)."""
    stream = StreamReader()
    stream.feed_data(wire)
    parser = Frame.parse(stream.read_exact, mask=True, max_size=None, extensions=[])
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("the frame was incomplete")


@pytest.mark.parametrize("size", [0, 125, 126, 70000])
def test_client_frames_are_masked_and_read_by_the_library(size):
    payload = bytes(index % 7 for index in range(size))
    frame = library_parse(encode_frame(OP_PING if size <= 125 else 0x2, payload))
    assert frame.data == payload and frame.fin


def test_oversized_frames_and_reserved_bits_are_errors():
    with pytest.raises(WebSocketError, match="more than the probe reads"):
        FrameReader().feed(bytes([0x82, 127]) + (MAX_PAYLOAD + 1).to_bytes(8, "big"))
    with pytest.raises(WebSocketError, match="reserved frame bits"):
        FrameReader().feed(bytes([0xC1, 0]))


def test_urls_are_checked_and_shown_without_query_or_credentials():
    assert ws_where("wss://user:secret@example.com/ws/monitor/x?token=abc") == "example.com:443/ws/monitor/x"
    assert ws_url_problem("http://example.com/ws") == "the URL scheme is 'http', not ws:// or wss://"
    assert ws_url_problem("ws:///nohost") == "the URL has no host"
    assert ws_url_problem("ws://example.com:port/x") == "the URL has an invalid port"
    assert ws_url_problem("ws://[::1]:8080/x") is None


def test_hold_against_a_real_server_counts_messages_and_a_drop():
    def handler(connection):
        connection.send("one")
        connection.send(b"two")
        if connection.request.path == "/drop":
            connection.close(code=1011, reason="going away")
            return
        time.sleep(5)

    server = serve(handler, "127.0.0.1", 0)
    port = server.socket.getsockname()[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        kept = WebSocketClient(f"ws://127.0.0.1:{port}/keep").hold(time.monotonic() + 5, 0.5)
        dropped = WebSocketClient(f"ws://127.0.0.1:{port}/drop").hold(time.monotonic() + 5, 5)
    finally:
        server.shutdown()
    assert (kept.connected, kept.dropped, kept.messages, kept.error) == (True, False, 2, None)
    assert kept.held_s >= 0.5
    assert (dropped.connected, dropped.dropped, dropped.messages, dropped.close_code) == (True, True, 2, 1011)
    assert "closed the WebSocket" in dropped.error and "going away" in dropped.error


def test_wss_verifies_the_server_certificate(tmp_path):
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))

    def handler(connection):
        connection.send("over tls")
        time.sleep(2)

    server = serve(handler, "127.0.0.1", 0, ssl=context)
    port = server.socket.getsockname()[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        trusted = WebSocketClient(f"wss://127.0.0.1:{port}/x", ca_path=str(ca_file)).hold(time.monotonic() + 5, 0.3)
        untrusted = WebSocketClient(f"wss://127.0.0.1:{port}/x").hold(time.monotonic() + 5, 0.3)
        unchecked = WebSocketClient(f"wss://127.0.0.1:{port}/x", validate_certs=False).hold(time.monotonic() + 5, 0.3)
    finally:
        server.shutdown()
    assert (trusted.connected, trusted.messages, trusted.error) == (True, 1, None)
    assert not untrusted.connected and untrusted.error.startswith(f"TLS with 127.0.0.1:{port}/x failed: ")
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.error
    assert unchecked.connected and unchecked.messages == 1


def test_a_silent_server_cannot_stall_the_handshake():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the TCP connection, never answers the upgrade
        started = time.monotonic()
        hold = WebSocketClient(f"ws://127.0.0.1:{listener.getsockname()[1]}/x").hold(time.monotonic() + 0.5, 10)
        waited = time.monotonic() - started
    assert not hold.connected and "did not finish the WebSocket handshake in time" in hold.error
    assert waited < 10  # bounded by the handshake deadline, not the hold
