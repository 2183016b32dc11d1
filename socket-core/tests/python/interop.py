#!/usr/bin/env python3
"""Interop check against msgpack-python, the encoder of the Python origin.

Run by socket-core's test suite (tests/interop): it checks that our golden
frames decode with ``msgpack.unpackb(raw=False, strict_map_key=True)`` into
the five wire keys, and that ``msgpack.packb`` of the same dictionaries gives
the very same bytes; then it writes frames produced by ``msgpack.packb`` for
the Rust side to decode.

usage: interop.py GOLDEN_DIR OUT_FILE
"""

import os
import struct
import sys

try:
    import msgpack
except ImportError:
    sys.stderr.write("the python module msgpack is missing: run `pip install msgpack`\n")
    sys.exit(3)

KEYS = ["event_name", "timestamp_ms", "timestamp_iso", "message_type", "data"]


def envelope(message_type, data, event="wallpaper_change", ms=1795749010123,
             iso="2026-11-27T03:10:10.123456+00:00"):
    return {
        "event_name": event,
        "timestamp_ms": ms,
        "timestamp_iso": iso,
        "message_type": message_type,
        "data": data,
    }


# The golden messages of tests/codec/golden.rs, as Python sees them.
GOLDEN = {
    "data": envelope("data", {
        "file": "a.png",
        "percent": 42,
        "ratio": 0.5,
        "delta": -7,
        "big": 70000,
        "done": False,
        "note": None,
        "tags": ["x", -200],
        "size": {"w": 1920, "h": 1080},
        "thumb": b"\x00\x01\x02\xff",
    }),
    "error": envelope("error", {
        "code": "malformed",
        "error": "frame dropped: top level is not a map",
    }),
    "control": envelope("control", {
        "control": "hello",
        "protocol": 1,
        "client_name": "status-bar",
    }),
}


def read_frame(path):
    with open(path, "rb") as f:
        raw = f.read()
    (length,) = struct.unpack(">I", raw[:4])
    if length != len(raw) - 4:
        raise AssertionError(f"{path}: header says {length} bytes, body has {len(raw) - 4}")
    return raw[4:]


def check_golden(golden_dir):
    for name, expected in GOLDEN.items():
        body = read_frame(os.path.join(golden_dir, name + ".frame"))
        msg = msgpack.unpackb(body, raw=False, strict_map_key=True)
        if list(msg) != KEYS:
            raise AssertionError(f"{name}: keys {list(msg)} instead of {KEYS}")
        if msg != expected:
            raise AssertionError(f"{name}: decoded {msg!r}, expected {expected!r}")
        packed = msgpack.packb(expected)
        if packed != body:
            raise AssertionError(f"{name}: packb gives {packed.hex()}, our frame is {body.hex()}")


# Messages as the Python origin writes them: the fraction of timestamp_iso is
# omitted when zero, keys in any order, extra keys possible.
PRODUCED = [
    envelope("data", {"progress": 50, "file": "b.png",
                      "nested": {"list": [1, 2.5, None, True, "\u00fc"], "bin": b"\x00"}},
             event="wallpaper_progress", iso="2026-11-27T03:10:10+00:00", ms=1795749010000),
    envelope("error", {"code": "slow_consumer", "error": "too slow"}),
    envelope("control", {"action": "reload"}),
    {"data": {"x": 1}, "message_type": "data", "timestamp_iso": "2026-11-27T03:10:10.5+00:00",
     "timestamp_ms": 1795749010500, "event_name": "reordered", "extra": [1, 2]},
    envelope("data", {"neg": -2 ** 63, "max": 2 ** 64 - 1, "f": -0.25, "empty": {}, "list": []},
             ms=2 ** 64 - 1),
]


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    golden_dir, out_file = sys.argv[1], sys.argv[2]
    check_golden(golden_dir)
    with open(out_file, "wb") as f:
        for msg in PRODUCED:
            body = msgpack.packb(msg)
            f.write(struct.pack(">I", len(body)) + body)
    print(f"ok: {len(GOLDEN)} golden frames checked, {len(PRODUCED)} frames written "
          f"(msgpack {'.'.join(map(str, msgpack.version))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
