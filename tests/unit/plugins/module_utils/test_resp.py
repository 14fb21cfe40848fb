from __future__ import annotations

import socket
import threading

import pytest

from ansible_collections.emp.deploy.plugins.module_utils import _resp


def test_encode_command_is_resp2():
    assert _resp.encode_command(("SET", "k", 12)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"
    assert _resp.encode_command(("ECHO", "é")) == b"*2\r\n$4\r\nECHO\r\n$2\r\n\xc3\xa9\r\n"


@pytest.mark.parametrize("url, expected", [
    ("redis://127.0.0.1:6390/2", {"host": "127.0.0.1", "port": 6390, "db": 2, "tls": False, "password": None}),
    ("rediss://user:p%40ss@cache", {"host": "cache", "port": 6379, "db": 0, "tls": True, "password": "p@ss",
                                    "username": "user"}),
    ("unix:///run/redis.sock?db=3&password=x", {"unix_path": "/run/redis.sock", "db": 3, "password": "x"}),
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
