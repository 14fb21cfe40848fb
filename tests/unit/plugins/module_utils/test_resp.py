from __future__ import annotations

import socket
import threading
import time

import pytest

from ansible_collections.emp.deploy.plugins.module_utils import _resp
from servers import LOAD_MARGIN_S
from tests.integration.redis_fault_peers import FaultPeer


def test_encode_command_is_resp2():
    assert _resp.encode_command(("SET", "k", 12)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"
    assert _resp.encode_command(("ECHO", "é")) == b"*2\r\n$4\r\nECHO\r\n$2\r\n\xc3\xa9\r\n"


@pytest.mark.parametrize("url, expected", [
    ("redis://127.0.0.1:6390/2", {"host": "127.0.0.1", "port": 6390, "db": 2, "tls": False, "password": None}),
    ("rediss://user:p%40ss@cache", {"host": "cache", "port": 6379, "db": 0, "tls": True, "password": "p@ss",
                                    "username": "user"}),
    ("unix:///run/redis.sock?db=3&password=x", {"unix_path": "/run/redis.sock", "db": 3, "password": "x"}),
    # reserved characters left unencoded in a password are read the only way they can be
    ("redis://:pa#ss@127.0.0.1:6390/2", {"host": "127.0.0.1", "port": 6390, "db": 2, "password": "pa#ss"}),
    ("redis://u:p@s/s?w#d@cache:6390", {"host": "cache", "port": 6390, "username": "u", "password": "p@s/s?w#d"}),
    ("redis://:12?34@cache/1", {"host": "cache", "db": 1, "password": "12?34"}),
    ("redis://cache/0?password=a@b", {"host": "cache", "password": "a@b", "username": None}),
    ("redis://[::1]:6390/0", {"host": "::1", "port": 6390}),
    ("redis://:pw@[::1]/0", {"host": "::1", "port": 6379, "password": "pw"}),
    ("redis://", {"host": "127.0.0.1", "port": 6379, "db": 0}),
])
def test_parse_redis_url(url, expected):
    settings = _resp.parse_redis_url(url)
    for key, value in expected.items():
        assert settings[key] == value


def test_parse_info_and_client_list():
    info = _resp.parse_info("# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:12\r\n"
                            "mem_fragmentation_ratio:1.5\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n")
    assert info == {"redis_version": "7.0.15", "uptime_in_seconds": 12, "mem_fragmentation_ratio": 1.5,
                    "db0": {"keys": 3, "expires": 1, "avg_ttl": 0}}
    clients = _resp.parse_client_list("id=3 addr=127.0.0.1:5 name=emp-api db=0\nid=4 addr=127.0.0.1:6 name= db=0\n")
    assert [client["name"] for client in clients] == ["emp-api", ""]


def serve_once(answer: bytes) -> int:
    """A one-shot TCP peer that reads a request and answers raw bytes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def run():
        conn, _address = listener.accept()
        conn.recv(4096)
        conn.sendall(answer)
        conn.close()
        listener.close()

    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()[1]


def connection(port: int) -> _resp.RespConnection:
    return _resp.RespConnection(host="127.0.0.1", port=port, connect_timeout=1, command_timeout=1).connect()


def test_reply_types():
    port = serve_once(b"*5\r\n+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*1\r\n-ERR nested\r\n")
    with connection(port) as conn:
        reply = conn.execute("ANY")
    assert reply[:4] == ["OK", 42, "hello", None]
    assert isinstance(reply[4][0], _resp.ReplyError) and reply[4][0].code == "ERR"


def test_error_reply_raises_with_its_code():
    port = serve_once(b"-WRONGPASS invalid username-password pair\r\n")
    with connection(port) as conn, pytest.raises(_resp.ReplyError) as caught:
        conn.execute("AUTH", "x")
    assert caught.value.code == "WRONGPASS"


def test_foreign_protocol_is_named():
    port = serve_once(b"HTTP/1.0 400 Bad Request\r\n\r\n")
    with connection(port) as conn, pytest.raises(_resp.ProtocolMismatch) as caught:
        conn.execute("PING")
    assert caught.value.first_line == "HTTP/1.0 400 Bad Request"


def test_closed_connection_and_silence():
    port = serve_once(b"")
    with connection(port) as conn, pytest.raises(_resp.ConnectFailed):
        conn.execute("PING")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        silent = _resp.RespConnection(host="127.0.0.1", port=listener.getsockname()[1], command_timeout=0.2).connect()
        with pytest.raises(_resp.ReplyTimeout):
            silent.execute("PING")
        silent.close()
    finally:
        listener.close()


def test_refused_connection():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(_resp.ConnectFailed) as caught:
        connection(port)
    assert "refused" in str(caught.value).lower()


@pytest.mark.parametrize("url, reason", [
    ("redis://h:0/1", "the port is not a number between 1 and 65535"),
    ("redis://h/x", "the database is not a whole number"),
    ("redis://h/0#x", "it has a '#' part; write '#' in a password as %23"),
    ("http://h", "it does not start with redis://, rediss:// or unix://"),
    ("unix://", "the socket path is missing"),
])
def test_unreadable_urls_say_why_without_quoting_them(url, reason):
    with pytest.raises(_resp.UrlError) as caught:
        _resp.parse_redis_url(url)
    assert str(caught.value).startswith(reason)


def test_format_host_port_brackets_ipv6():
    assert _resp.format_host_port("::1", 6379) == "[::1]:6379"
    assert _resp.format_host_port("cache", 6379) == "cache:6379"


def test_error_replies_in_a_pipeline_name_their_command():
    port = serve_once(b"+OK\r\n-NOPERM no permissions to run the 'client|list' command\r\n")
    with connection(port) as conn:
        replies = conn.pipeline([("PING",), ("CLIENT", "LIST")])
    assert replies[0] == "OK" and replies[1].code == "NOPERM" and replies[1].command == "CLIENT LIST"


def fault_connection(peer: FaultPeer, **kwargs) -> _resp.RespConnection:
    kwargs.setdefault("connect_timeout", 2)
    kwargs.setdefault("command_timeout", 0.5)
    return _resp.RespConnection(host=peer.host, port=peer.port, **kwargs)


def test_a_dripping_reply_is_bounded_by_command_timeout():
    """One byte every 0.05 s of a 306-byte reply: 15 s per reply if each byte restarted the timeout."""
    with FaultPeer("drip", interval=0.05, reply=b"$300\r\n" + b"x" * 300 + b"\r\n") as peer:
        conn = fault_connection(peer, command_timeout=1).connect()
        started = time.monotonic()
        with pytest.raises(_resp.ReplyTimeout) as caught:
            conn.execute("PING")
        elapsed = time.monotonic() - started
        conn.close()
    assert str(caught.value).startswith("sent its reply too slowly: only ")
    assert str(caught.value).endswith(" of the reply to PING arrived within 1 s (command_timeout)")
    assert 1 <= elapsed < 1 + LOAD_MARGIN_S


def test_the_overall_deadline_bounds_many_commands_that_each_answer_in_time():
    with FaultPeer("slow", interval=0.1) as peer:
        conn = fault_connection(peer, command_timeout=1, deadline=_resp.Deadline(0.5, "timeout")).connect()
        started = time.monotonic()
        with pytest.raises(_resp.ReplyTimeout) as caught:
            for _sample in range(100):
                conn.execute("PING")
        elapsed = time.monotonic() - started
        conn.close()
    assert "within the probe's overall timeout of 0.5 s" in str(caught.value)
    assert elapsed < 0.5 + LOAD_MARGIN_S  # 100 samples of 0.1 s without the deadline


def test_a_peer_that_accepts_and_never_answers():
    with FaultPeer("silent") as peer:
        conn = fault_connection(peer, command_timeout=0.3).connect()
        with pytest.raises(_resp.ReplyTimeout) as caught:
            conn.execute("PING")
        conn.close()
    assert str(caught.value) == "did not answer in time: no reply to PING within 0.3 s (command_timeout)"


def test_a_truncated_reply_says_the_connection_closed_mid_reply():
    with FaultPeer("truncate") as peer:
        conn = fault_connection(peer).connect()
        with pytest.raises(_resp.ConnectionLost) as caught:
            conn.execute("GET", "k")
        conn.close()
    assert str(caught.value) == "closed the connection in the middle of its reply to GET (after 9 bytes)"


def test_a_silent_peer_fails_the_tls_handshake_with_a_hint_within_connect_timeout():
    with FaultPeer("silent") as peer:
        started = time.monotonic()
        with pytest.raises(_resp.ConnectFailed) as caught:
            fault_connection(peer, tls=True, connect_timeout=1).connect()
        elapsed = time.monotonic() - started
    assert str(caught.value).startswith("TLS handshake failed: is the server serving TLS on this port?")
    assert elapsed < 1 + LOAD_MARGIN_S


def test_a_plain_text_answer_to_the_tls_hello_gets_the_tls_hint():
    with FaultPeer("slow", interval=0, reply=b"-ERR unknown command\r\n") as peer:
        with pytest.raises(_resp.ConnectFailed) as caught:
            fault_connection(peer, tls=True).connect()
    assert str(caught.value).startswith("TLS handshake failed: is the server serving TLS on this port? (")


def test_foreign_bytes_without_a_newline_are_named_at_once():
    with FaultPeer("slow", interval=0, reply=b"\x16\x03\x01" + b"\x00" * 100) as peer:
        conn = fault_connection(peer, command_timeout=30).connect()
        started = time.monotonic()
        with pytest.raises(_resp.ProtocolMismatch):
            conn.execute("PING")
        conn.close()
    assert time.monotonic() - started < LOAD_MARGIN_S  # not the command_timeout
