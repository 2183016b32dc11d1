#!/usr/bin/env python3
"""An independent client for the socket wire protocol v1, written only from the
protocol documentation (SPEC section 4), with nothing but the `msgpack` package.

It is driven by the Rust test `python.rs` through stdin (one command per line) and
reports each step as one JSON line on stdout. Any deviation from the protocol raises,
printing the reason on stderr and exiting non-zero.

Framing: a 4-byte unsigned big-endian length N, then N bytes of MessagePack: a map
with the string keys event_name, timestamp_ms, timestamp_iso, message_type, data.

Usage: client.py SOCKET_PATH EVENT_NAME
Commands on stdin:
  broadcast   read frames until a DATA message whose data has "from": "serve"
  relay       send a DATA message {"from": "python", "n": 2}
  overflow    open another connection and expect the max_connections ERROR frame, then EOF
  quit        close and exit 0
"""

import datetime
import json
import re
import socket
import struct
import sys

import msgpack

TIMEOUT = 10.0
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d$")
KEYS = {"event_name", "timestamp_ms", "timestamp_iso", "message_type", "data"}


def report(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_frame(sock):
    """One decoded message, or None at end of stream."""
    header = recv_exact(sock, 4)
    if header is None:
        return None
    (length,) = struct.unpack(">I", header)
    if not 1 <= length <= 1 << 20:
        raise ValueError(f"bad frame length {length}")
    body = recv_exact(sock, length)
    if body is None:
        raise ValueError("stream ended inside a frame")
    msg = msgpack.unpackb(body, raw=False, strict_map_key=True)
    check_message(msg)
    return msg


def check_message(msg):
    if not isinstance(msg, dict) or not KEYS <= set(msg):
        raise ValueError(f"not a message map: {msg!r}")
    if msg["message_type"] not in ("data", "error", "control"):
        raise ValueError(f"bad message_type {msg['message_type']!r}")
    if not isinstance(msg["timestamp_ms"], int) or msg["timestamp_ms"] < 1_600_000_000_000:
        raise ValueError(f"bad timestamp_ms {msg['timestamp_ms']!r}")
    if not ISO_RE.match(msg["timestamp_iso"]):
        raise ValueError(f"bad timestamp_iso {msg['timestamp_iso']!r}")
    parsed = datetime.datetime.fromisoformat(msg["timestamp_iso"])
    if abs(parsed.timestamp() * 1000 - msg["timestamp_ms"]) > 1:
        raise ValueError("timestamp_iso and timestamp_ms disagree")
    if not isinstance(msg["data"], dict):
        raise ValueError("data is not a map")


def make_message(event, message_type, data):
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "event_name": event,
        "timestamp_ms": int(now.timestamp() * 1000),
        "timestamp_iso": now.isoformat(timespec="microseconds"),
        "message_type": message_type,
        "data": data,
    }


def send_frame(sock, msg):
    body = msgpack.packb(msg, use_bin_type=True)
    sock.sendall(struct.pack(">I", len(body)) + body)


def connect(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(path)
    return sock


def is_protocol_control(msg):
    return msg["message_type"] == "control" and isinstance(msg["data"].get("control"), str)


def main():
    path, event = sys.argv[1], sys.argv[2]
    sock = connect(path)
    send_frame(sock, make_message(event, "control", {"control": "hello", "protocol": 1, "client_name": "python-interop"}))
    welcome = read_frame(sock)
    if welcome is None:
        raise ValueError("closed before welcome")
    data = welcome["data"]
    if welcome["message_type"] != "control" or data.get("control") != "welcome":
        raise ValueError(f"first frame is not welcome: {welcome!r}")
    if data.get("protocol") != 1 or data.get("event_name") != event or data.get("allow_client_send") is not True:
        raise ValueError(f"unexpected welcome: {data!r}")
    if not isinstance(data.get("client_id"), str):
        raise ValueError(f"welcome without client_id: {data!r}")
    report("welcome", client_id=data["client_id"], server=data.get("server"))

    for line in sys.stdin:
        command = line.strip()
        if command == "broadcast":
            while True:
                msg = read_frame(sock)
                if msg is None:
                    raise ValueError("closed while waiting for the broadcast")
                if is_protocol_control(msg):
                    if msg["data"]["control"] == "ping":
                        send_frame(sock, make_message(event, "control", {"control": "pong", "nonce": msg["data"]["nonce"]}))
                    continue
                if msg["message_type"] == "data" and msg["data"].get("from") == "serve":
                    raw = msg["data"].get("raw")
                    if not isinstance(raw, bytes):
                        raise ValueError(f"{{'$binary': ...}} did not arrive as MessagePack bin: {raw!r}")
                    report("broadcast", event_name=msg["event_name"], n=msg["data"].get("n"), raw_hex=raw.hex())
                    break
        elif command == "relay":
            send_frame(sock, make_message(event, "data", {"from": "python", "n": 2}))
            report("relay")
        elif command == "overflow":
            extra = connect(path)
            send_frame(extra, make_message(event, "control", {"control": "hello", "protocol": 1}))
            msg = read_frame(extra)
            if msg is None or msg["message_type"] != "error" or msg["data"].get("code") != "max_connections":
                raise ValueError(f"expected the max_connections error frame, got {msg!r}")
            if not isinstance(msg["data"].get("error"), str):
                raise ValueError(f"error frame without text: {msg!r}")
            end = read_frame(extra)
            if end is not None:
                raise ValueError(f"expected end of stream after the error frame, got {end!r}")
            extra.close()
            report("max_connections", error=msg["data"]["error"])
        elif command == "quit":
            break
        elif command:
            raise ValueError(f"unknown command {command!r}")
    sock.close()
    report("done")


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # report any failure on one line, exit non-zero
        print(f"client.py: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
