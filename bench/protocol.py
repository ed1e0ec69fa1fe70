"""Protocol throughput on one core: frames per second for encode+encrypt and decode+verify.

    python bench/protocol.py                 # the figures (target: >= 50,000 frames/s each)
    python bench/protocol.py --fuzz 1000000  # also a fuzz run: random and mutated frames

The fuzz run feeds random bytes, mutated valid frames (bit flips, byte edits, truncation, extension,
spliced headers) and authentic frames with random plaintexts (sealed with the real key, so they reach
the payload parser) to `decode_frame`, and counts any exception that is not a `ProtocolError`.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meter_protocol import (
    Ack,
    AckResult,
    Direction,
    Message,
    Profile,
    ProtocolError,
    ReplayWindow,
    SetTariff,
    TariffKind,
    TariffStep,
    TopUp,
    decode_frame,
    encode_frame,
    meter_code_with_check_digit,
    peek_header,
)
from meter_protocol.frame import HEADER_BYTES, nonce_for
from meter_protocol.keys import aead_for

METER_CODE = meter_code_with_check_digit("4100000000000012345")
KEY = bytes(range(16))


def _rate(n: int, run: Callable[[], None]) -> float:
    """Frames per second of CPU time of this process (one core): the machine's other load, which
    stretches wall-clock time, does not count. The wall-clock rate is printed beside it."""
    start, wall = time.process_time(), time.perf_counter()
    run()
    cpu, wall = time.process_time() - start, time.perf_counter() - wall
    _WALL.append(n / wall)
    return n / cpu


_WALL: list[float] = []


def bench_codec(n: int, message: Message) -> tuple[float, float, int]:
    frames: list[bytes] = []

    def encode() -> None:
        append = frames.append
        for counter in range(1, n + 1):
            append(encode_frame(message, meter_code=METER_CODE, key=KEY, key_id=1, counter=counter))

    encode_rate = _rate(n, encode)

    def decode() -> None:
        window = ReplayWindow()
        for frame in frames:
            header = peek_header(frame)  # as a head end does: read the identity, look up the key
            decoded = decode_frame(frame, key=KEY, window=window, meter_code=header.meter_code)
            window = decoded.window or window

    decode_rate = _rate(n, decode)
    return encode_rate, decode_rate, len(frames[0])


def fuzz_inputs(n: int, seed: int = 1) -> Iterator[bytes]:
    rnd = random.Random(seed)
    messages: list[Message] = [
        TopUp(99, 12_345),
        SetTariff(2, 0, TariffKind.BLOCK, 10, (TariffStep(0, 100), TariffStep(500, 200))),
        Ack(5, 1, AckResult.OK, credit_minor=-5),
    ]
    valid = [
        encode_frame(m, meter_code=METER_CODE, key=KEY, key_id=1, counter=c, profile=p)
        for c, m in enumerate(messages, start=1)
        for p in Profile
    ]
    aead = aead_for(KEY)
    for i in range(n):
        kind = i % 4
        base = bytearray(rnd.choice(valid))
        if kind == 0:
            yield rnd.randbytes(rnd.randrange(0, 200))
        elif kind == 1:
            for _ in range(rnd.randrange(1, 4)):
                position = rnd.randrange(len(base))
                if rnd.random() < 0.5:
                    base[position] ^= 1 << rnd.randrange(8)
                else:
                    base[position] = rnd.randrange(256)
            yield bytes(base)
        elif kind == 2:
            cut = rnd.randrange(-len(base), 40)
            yield bytes(base[:cut]) if cut < 0 else bytes(base) + rnd.randbytes(cut)
        else:
            header = bytes(base[:HEADER_BYTES])
            if rnd.random() < 0.3:
                header = header[:2] + bytes([rnd.choice([0x01, 0x02, 0x09, 0x81, 0x86, 0x7F])]) + header[3:]
            direction = Direction.UPLINK if header[2] & 0x80 else Direction.DOWNLINK
            counter = int.from_bytes(header[13:17], "big")
            plaintext = rnd.randbytes(rnd.randrange(0, 60))
            if rnd.random() < 0.5 and len(base) > HEADER_BYTES + 8:  # a valid payload, mutated
                good = (
                    aead.decrypt(
                        nonce_for(base[4:13], direction, counter),
                        bytes(base[HEADER_BYTES:]),
                        bytes(base[:HEADER_BYTES]),
                    )
                    if header[2] == base[2]
                    else plaintext
                )
                mutated = bytearray(good)
                if mutated:
                    mutated[rnd.randrange(len(mutated))] = rnd.randrange(256)
                plaintext = bytes(mutated)
            yield header + aead.encrypt(nonce_for(header[4:13], direction, counter), plaintext, header)


def fuzz(n: int, seed: int = 1) -> dict[str, int]:
    """Decode `n` fuzzed frames. Returns counts: decoded, refused (ProtocolError), foreign (anything else)."""
    counts = {"decoded": 0, "refused": 0, "foreign": 0}
    for data in fuzz_inputs(n, seed):
        try:
            decode_frame(data, key=KEY)
        except ProtocolError:
            counts["refused"] += 1
        except Exception:
            counts["foreign"] += 1
        else:
            counts["decoded"] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000, help="frames per figure")
    parser.add_argument("--fuzz", type=int, default=0, help="also run a fuzz of this many frames")
    args = parser.parse_args()
    cases: list[tuple[str, Message]] = [
        ("top-up", TopUp(1001, 50_000)),
        ("ack", Ack(7, 1, AckResult.OK, credit_minor=61_250)),
        (
            "tariff (48 bands)",
            SetTariff(5, 0, TariffKind.TIME_OF_USE, 30, tuple(TariffStep(m, 8_000 + m) for m in range(0, 1440, 30))),
        ),
    ]
    print(f"meter_protocol, one core, {args.n:,} frames per figure (target >= 50,000 frames/s)")
    print("  frames per CPU-second (wall-clock rate in brackets); decode includes peek_header and the replay window")
    for name, message in cases:
        _WALL.clear()
        encode_rate, decode_rate, size = bench_codec(args.n, message)
        print(
            f"  {name:<18} {size:>4} bytes  encode+encrypt {encode_rate:>9,.0f}/s ({_WALL[0]:>7,.0f})"
            f"   decode+verify {decode_rate:>9,.0f}/s ({_WALL[1]:>7,.0f})"
        )
    if args.fuzz:
        start = time.perf_counter()
        counts = fuzz(args.fuzz)
        elapsed = time.perf_counter() - start
        print(
            f"  fuzz: {args.fuzz:,} frames in {elapsed:.1f} s ({args.fuzz / elapsed:,.0f}/s): "
            f"{counts['decoded']:,} decoded, {counts['refused']:,} refused with ProtocolError, "
            f"{counts['foreign']} other exceptions"
        )
        if counts["foreign"]:
            sys.exit(1)


if __name__ == "__main__":
    main()
