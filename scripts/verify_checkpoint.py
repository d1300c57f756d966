#!/usr/bin/env python3
"""Check a rotation ledger's signed checkpoint and proofs as an outsider would.

Written from the public formats, not from the ledger's code: RFC 9162
section 2.1 (Merkle tree hashes, inclusion and consistency proof
verification) and the C2SP signed-note and tlog-checkpoint specifications.
It needs only the Python standard library and `cryptography` (for Ed25519).

    verify_checkpoint.py --url http://localhost:8080 --token TOKEN \\
        --key 'rotation-ledger/<id>+<key id>+<key>' [--old OLD_CHECKPOINT] \\
        [--position P ...] [--save FILE]

It fetches GET /v1/checkpoint and verifies its signature with the key; for
each position (by default the first and the last) it fetches the event and
its inclusion proof and checks that the event's hash is in the signed tree;
with --old it checks that the older checkpoint (signed by the same key) is
a prefix of the new one through a consistency proof. It exits 0 when all
of that holds and 1 naming what does not.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ED25519 = 0x01
EM_DASH = "\u2014"


class VerificationError(Exception):
    """Something the ledger showed does not hold."""


# --- RFC 9162 section 2.1: the tree's hashes and proof verification ---------


def leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 || leaf)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes:
    """The root an inclusion proof implies (RFC 9162 section 2.1.3.2).

    `index` is 0-based, `leaf` the leaf hash. Raises VerificationError when
    the proof cannot be for that index and size.
    """
    if index >= size:
        raise VerificationError(f"leaf index {index} is not in a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise VerificationError("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("the inclusion proof is too short")
    return r


def verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, path: list[bytes]
) -> None:
    """Checks a consistency proof (RFC 9162 section 2.1.4.2)."""
    if first == 0 or first > second:
        raise VerificationError(f"no consistency proof joins size {first} to size {second}")
    if first == second:
        if path:
            raise VerificationError("a proof between equal sizes must be empty")
        if first_hash != second_hash:
            raise VerificationError("the trees have the same size and different roots")
        return
    if not path:
        raise VerificationError("the consistency proof is empty")
    if first & (first - 1) == 0:
        path = [first_hash] + path
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("the consistency proof is too short")
    if fr != first_hash:
        raise VerificationError(f"the consistency proof does not lead to the root of size {first}")
    if sr != second_hash:
        raise VerificationError(f"the consistency proof does not lead to the root of size {second}")


# --- C2SP signed-note and tlog-checkpoint -----------------------------------


@dataclass(frozen=True)
class VerifierKey:
    name: str
    key_id: bytes
    public_key: Ed25519PublicKey


def key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def parse_verifier_key(text: str) -> VerifierKey:
    """Reads `<name>+<hex key id>+<base64(0x01 || public key)>`."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3 or not parts[0] or len(parts[1]) != 8:
        raise VerificationError("the verifier key is not <name>+<key id>+<key>")
    name, hex_id, encoded = parts
    try:
        wanted_id = bytes.fromhex(hex_id)
        raw = base64.b64decode(encoded, validate=True)
    except ValueError as error:
        raise VerificationError(f"the verifier key is malformed: {error}") from None
    if len(raw) != 33 or raw[0] != ED25519:
        raise VerificationError("the verifier key is not an Ed25519 key")
    if key_id(name, raw[1:]) != wanted_id:
        raise VerificationError("the verifier key's id does not match its name and key")
    return VerifierKey(name, wanted_id, Ed25519PublicKey.from_public_bytes(raw[1:]))


def open_note(note: str, key: VerifierKey) -> str:
    """Verifies a signed note's signature by `key` and returns its text.

    Signatures by other keys (a witness's, say) are allowed and ignored.
    """
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise VerificationError("the note is not text, a blank line and signatures")
    text, signatures = note[: split + 1], note[split + 2 : -1]
    found = False
    for line in signatures.split("\n"):
        if not line.startswith(EM_DASH + " "):
            raise VerificationError(f"not a signature line: {line!r}")
        name, _, encoded = line[2:].partition(" ")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise VerificationError(f"a signature line is not base64: {line!r}") from None
        if name != key.name or blob[:4] != key.key_id:
            continue
        found = True
        try:
            key.public_key.verify(blob[4:], text.encode())
        except InvalidSignature:
            raise VerificationError(f"the signature by {key.name} does not verify") from None
    if not found:
        raise VerificationError(f"the note carries no signature by {key.name}")
    return text


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


def parse_checkpoint(text: str) -> Checkpoint:
    """Reads `<origin>\\n<size>\\n<base64 root>\\n[extension lines]`."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise VerificationError("the checkpoint is not origin, size and root lines")
    origin, size, root = lines[0], lines[1], lines[2]
    if not origin:
        raise VerificationError("the checkpoint has no origin")
    if not size.isdigit() or not size.isascii() or (size != "0" and size.startswith("0")):
        raise VerificationError(f"the checkpoint's size {size!r} is not a decimal number")
    try:
        root_bytes = base64.b64decode(root, validate=True)
    except ValueError:
        root_bytes = b""
    if len(root_bytes) != 32:
        raise VerificationError("the checkpoint's root is not 32 bytes of base64")
    return Checkpoint(origin, int(size), root_bytes)


# --- Talking to the ledger --------------------------------------------------


class Ledger:
    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.token = token

    def get(self, path: str, **query: int) -> bytes:
        address = self.url + path
        if query:
            address += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(address, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raise VerificationError(f"GET {path} answered {error.code}") from None
        except urllib.error.URLError as error:
            raise VerificationError(f"GET {path} failed: {error.reason}") from None

    def json(self, path: str, **query: int) -> dict:
        try:
            return json.loads(self.get(path, **query))
        except json.JSONDecodeError:
            raise VerificationError(f"GET {path} did not answer JSON") from None


def hex_hashes(values: object, what: str) -> list[bytes]:
    if not isinstance(values, list):
        raise VerificationError(f"{what}: hashes is not a list")
    try:
        hashes = [bytes.fromhex(value) for value in values]
    except (TypeError, ValueError):
        raise VerificationError(f"{what}: a hash is not hex") from None
    if any(len(value) != 32 for value in hashes):
        raise VerificationError(f"{what}: a hash is not 32 bytes")
    return hashes


def check_inclusion(ledger: Ledger, checkpoint: Checkpoint, position: int) -> None:
    """The event at `position` is leaf `position - 1` of the signed tree."""
    what = f"position {position}"
    if not 1 <= position <= checkpoint.size:
        raise VerificationError(f"{what} is not in the checkpoint's tree of size {checkpoint.size}")
    page = ledger.json("/v1/events", after=position - 1, limit=1)
    events = page.get("events") or []
    if not events or events[0].get("position") != position:
        raise VerificationError(f"{what}: the ledger did not return that event")
    try:
        event_hash = bytes.fromhex(events[0]["hash"])
    except (KeyError, TypeError, ValueError):
        raise VerificationError(f"{what}: the event has no hex hash") from None
    proof = ledger.json("/v1/proofs/inclusion", position=position, size=checkpoint.size)
    if proof.get("position") != position or proof.get("size") != checkpoint.size:
        raise VerificationError(f"{what}: the proof is for another position or size")
    leaf = leaf_hash(event_hash)
    if proof.get("leaf_hash") != leaf.hex():
        raise VerificationError(f"{what}: the proof's leaf hash is not the event's")
    hashes = hex_hashes(proof.get("hashes"), f"inclusion proof for {what}")
    root = root_from_inclusion_proof(position - 1, checkpoint.size, leaf, hashes)
    if root != checkpoint.root:
        raise VerificationError(f"{what}: the event is not in the signed tree")


def check_consistency(ledger: Ledger, old: Checkpoint, new: Checkpoint) -> None:
    """The older checkpoint's tree is a prefix of the newer one's."""
    if old.origin != new.origin:
        raise VerificationError(f"the older checkpoint is of another log ({old.origin})")
    if old.size > new.size:
        raise VerificationError(f"the log shrank from {old.size} to {new.size} events")
    if old.size == 0:
        return
    if old.size == new.size:
        if old.root != new.root:
            raise VerificationError(f"two different trees were signed at size {old.size}")
        return
    proof = ledger.json("/v1/proofs/consistency", **{"from": old.size, "to": new.size})
    if proof.get("from") != old.size or proof.get("to") != new.size:
        raise VerificationError("the consistency proof is for other sizes")
    hashes = hex_hashes(proof.get("hashes"), "consistency proof")
    try:
        verify_consistency(old.size, new.size, old.root, new.root, hashes)
    except VerificationError as error:
        raise VerificationError(
            f"the log at {new.size} does not extend the older checkpoint at {old.size}: {error}"
        ) from None


def run(args: argparse.Namespace) -> list[str]:
    """Every check, returning what does not hold (empty when all does)."""
    key = parse_verifier_key(args.key)
    ledger = Ledger(args.url, args.token)
    note = ledger.get("/v1/checkpoint").decode()
    checkpoint = parse_checkpoint(open_note(note, key))
    if args.save:
        with open(args.save, "w", encoding="utf-8") as file:
            file.write(note)
    failures = []
    positions = args.position or sorted({1, checkpoint.size} - {0})
    for position in positions:
        try:
            check_inclusion(ledger, checkpoint, position)
        except VerificationError as error:
            failures.append(str(error))
    if args.old:
        with open(args.old, encoding="utf-8") as file:
            try:
                old = parse_checkpoint(open_note(file.read(), key))
                check_consistency(ledger, old, checkpoint)
            except VerificationError as error:
                failures.append(f"older checkpoint {args.old}: {error}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the ledger's base URL")
    parser.add_argument("--token", required=True, help="a bearer token the ledger accepts")
    parser.add_argument("--key", required=True, help="the ledger's verifier key (note format)")
    parser.add_argument("--old", help="an older signed checkpoint the log must extend")
    parser.add_argument(
        "--position", type=int, action="append", help="an event to prove (default: first, last)"
    )
    parser.add_argument("--save", help="write the verified checkpoint here, for a later --old")
    args = parser.parse_args(argv)
    try:
        failures = run(args)
    except VerificationError as error:
        failures = [str(error)]
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    if not failures:
        print("OK: the checkpoint's signature, inclusion and consistency proofs hold")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
