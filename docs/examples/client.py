"""A socket wire-protocol v1 client, written from docs/protocol.md only (needs `pip install msgpack`).

python3 client.py ADDRESS EVENT listen N    handshake, then print N messages as JSON lines
python3 client.py ADDRESS EVENT send JSON   handshake, send one DATA message, wait for its receipt
ADDRESS is a Unix socket path or HOST:PORT.
"""
import base64, json, socket, struct, sys, time
from datetime import datetime, timezone
import msgpack

def message(event, message_type, data):  # the five keys (§3), both stamps from one clock read (§4)
    ns = time.time_ns()
    iso = datetime.fromtimestamp(ns // 10**9, timezone.utc).replace(microsecond=ns // 1000 % 10**6)
    return {"event_name": event, "timestamp_ms": ns // 10**6, "timestamp_iso": iso.isoformat(timespec="microseconds"),
            "message_type": message_type, "data": data}

def send(sock, msg):  # a frame: u32 big-endian length, then one MessagePack map (§2)
    body = msgpack.packb(msg)
    sock.sendall(struct.pack(">I", len(body)) + body)

def receive(sock, n=None):
    if n is None:
        return msgpack.unpackb(receive(sock, struct.unpack(">I", receive(sock, 4))[0]), raw=False, strict_map_key=True)
    buf = b""
    while len(buf) < n:
        buf += sock.recv(n - len(buf)) or sys.exit("connection closed by the server")
    return buf

def control(msg):  # protocol control: a CONTROL message whose data has a string `control` key (§5)
    c = msg["data"].get("control") if msg["message_type"] == "control" else None
    return c if isinstance(c, str) else None

address, event, command, arg = sys.argv[1:5]
host, _, port = address.rpartition(":")
sock = socket.create_connection((host, int(port))) if port.isdigit() else socket.socket(socket.AF_UNIX)
if not port.isdigit():
    sock.connect(address)
send(sock, message(event, "control", {"control": "hello", "protocol": 1, "client_name": "python-example"}))
welcome = receive(sock)  # the first frame in answer to hello (§6)
if control(welcome) != "welcome" or welcome["data"]["event_name"] != event:
    sys.exit(f"expected welcome for {event}, got {welcome}")
print(json.dumps({"welcome": welcome["data"]}), flush=True)
if command == "send":
    send(sock, message(event, "data", json.loads(arg)))
    send(sock, message(event, "control", {"control": "ping", "nonce": 7}))  # only clients ping (§6)
    reply = receive(sock)
    while not (control(reply) == "pong" and reply["data"]["nonce"] == 7):  # the pong is the receipt
        if reply["message_type"] == "error":
            sys.exit(f"refused by the server: {reply['data']}")
        reply = receive(sock)
    print(json.dumps({"receipt": reply["data"]}), flush=True)
else:
    for _ in range(int(arg)):
        msg = receive(sock)
        while control(msg) is not None:  # welcome, pong, shutdown: never printed
            msg = receive(sock)
        print(json.dumps(msg, default=lambda b: {"$binary": base64.b64encode(b).decode()}), flush=True)
sock.shutdown(socket.SHUT_WR)  # closing (§6): our end-of-stream first, then read until the server closes
sock.settimeout(5)
while sock.recv(65536):
    pass
