#!/usr/bin/env python3
"""Checks verify_checkpoint.py's pure functions and its whole run.

Run by hand: `python3 scripts/verify_checkpoint_test.py`. Proofs are made
here by RFC 9162 section 2.1's recursive definitions (MTH, PATH, PROOF),
which the verifier's iterative algorithms must accept; the notes are the
published examples of Go's sumdb note package and of the C2SP spec. The
whole run is checked against a small fake ledger served on localhost.
"""

import base64
import hashlib
import http.server
import json
import os
import sys
import tempfile
import threading
import unittest
import urllib.parse

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_checkpoint as vc  # noqa: E402

GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
C2SP_VERIFIER = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n\n\u2014 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def split(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves):
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return vc.leaf_hash(leaves[0])
    k = split(len(leaves))
    return vc.node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m, leaves):
    if len(leaves) == 1:
        return []
    k = split(len(leaves))
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def subproof(m, leaves, whole):
    if m == len(leaves):
        return [] if whole else [mth(leaves)]
    k = split(len(leaves))
    if m <= k:
        return subproof(m, leaves[:k], whole) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


def event_hashes(count, changed=None):
    return [hashlib.sha256(b"x" if i == changed else str(i).encode()).digest() for i in range(count)]


class Signer:
    """A note signer made with `cryptography`, for the fake ledger."""

    def __init__(self, name):
        self.name = name
        self.private = Ed25519PrivateKey.generate()
        public = self.private.public_key().public_bytes_raw()
        self.id = vc.key_id(name, public)
        encoded = base64.b64encode(b"\x01" + public).decode()
        self.verifier = f"{name}+{self.id.hex()}+{encoded}"

    def sign(self, text):
        blob = base64.b64encode(self.id + self.private.sign(text.encode())).decode()
        return f"{text}\n\u2014 {self.name} {blob}\n"

    def checkpoint(self, origin, leaves):
        root = base64.b64encode(mth(leaves)).decode()
        return self.sign(f"{origin}\n{len(leaves)}\n{root}\n")


class TreeTests(unittest.TestCase):
    def test_inclusion_proofs_of_every_small_tree_verify(self):
        leaves = event_hashes(40)
        for size in range(1, 41):
            root = mth(leaves[:size])
            for index in range(size):
                proof = path(index, leaves[:size])
                leaf = vc.leaf_hash(leaves[index])
                self.assertEqual(vc.root_from_inclusion_proof(index, size, leaf, proof), root)
                if proof:
                    forged = [bytes(32)] + proof[1:]
                    self.assertNotEqual(
                        vc.root_from_inclusion_proof(index, size, leaf, forged), root
                    )
                with self.assertRaises(vc.VerificationError):
                    vc.root_from_inclusion_proof(index, size, leaf, proof + [bytes(32)])

    def test_consistency_proofs_of_every_small_pair_verify(self):
        leaves = event_hashes(40)
        rebuilt = event_hashes(40, changed=2)
        for second in range(1, 41):
            for first in range(1, second + 1):
                proof = subproof(first, leaves[:second], True)
                old, new = mth(leaves[:first]), mth(leaves[:second])
                vc.verify_consistency(first, second, old, new, proof)
                if first > 2:
                    with self.assertRaises(vc.VerificationError):
                        forged = mth(rebuilt[:second])
                        vc.verify_consistency(first, second, old, forged, proof)
                if proof:
                    with self.assertRaises(vc.VerificationError):
                        vc.verify_consistency(first, second, old, new, proof[:-1])


class NoteTests(unittest.TestCase):
    def test_published_examples_verify(self):
        self.assertEqual(vc.open_note(GO_NOTE, vc.parse_verifier_key(GO_VERIFIER)), GO_TEXT)
        text = vc.open_note(C2SP_NOTE, vc.parse_verifier_key(C2SP_VERIFIER))
        self.assertEqual(text, "This is an example message.\n")

    def test_changed_text_and_other_keys_fail(self):
        key = vc.parse_verifier_key(GO_VERIFIER)
        with self.assertRaisesRegex(vc.VerificationError, "does not verify"):
            vc.open_note(GO_NOTE.replace("problem,", "problem;"), key)
        with self.assertRaisesRegex(vc.VerificationError, "no signature"):
            vc.open_note(GO_NOTE, vc.parse_verifier_key(C2SP_VERIFIER))
        with self.assertRaises(vc.VerificationError):
            vc.parse_verifier_key(GO_VERIFIER.replace("c74f20a3", "c74f20a4"))

    def test_checkpoints_parse(self):
        root = base64.b64encode(bytes(range(32))).decode()
        checkpoint = vc.parse_checkpoint(f"origin/x\n42\n{root}\nextension\n")
        self.assertEqual(checkpoint, vc.Checkpoint("origin/x", 42, bytes(range(32))))
        for text in [f"o\n042\n{root}\n", f"o\n42\n{root}", "o\n42\nAAAA\n", f"\n42\n{root}\n"]:
            with self.assertRaises(vc.VerificationError):
                vc.parse_checkpoint(text)


class LedgerVectorTests(unittest.TestCase):
    """What the ledger's own code signed and proved (testdata written by the
    Rust test `the_outsider_verifier_vectors_are_current`)."""

    @classmethod
    def setUpClass(cls):
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "testdata", "checkpoint_vectors.json"), encoding="utf-8") as f:
            cls.vectors = json.load(f)
        key = vc.parse_verifier_key(cls.vectors["verifier_key"])
        cls.checkpoint = vc.parse_checkpoint(vc.open_note(cls.vectors["checkpoint"], key))

    def test_inclusion_proofs_lead_to_the_signed_root(self):
        for case in self.vectors["inclusion"]:
            leaf = vc.leaf_hash(bytes.fromhex(case["event_hash"]))
            hashes = [bytes.fromhex(h) for h in case["hashes"]]
            root = vc.root_from_inclusion_proof(case["position"] - 1, case["size"], leaf, hashes)
            self.assertEqual(root, self.checkpoint.root, case["position"])

    def test_consistency_proofs_join_the_signed_roots(self):
        key = vc.parse_verifier_key(self.vectors["verifier_key"])
        older = vc.parse_checkpoint(vc.open_note(self.vectors["older_checkpoint"], key))
        roots = {case["from"]: case["from_root"] for case in self.vectors["consistency"]}
        self.assertEqual(roots[older.size], older.root.hex())
        for case in self.vectors["consistency"]:
            hashes = [bytes.fromhex(h) for h in case["hashes"]]
            first_root = bytes.fromhex(case["from_root"])
            vc.verify_consistency(
                case["from"], case["to"], first_root, self.checkpoint.root, hashes
            )


class FakeLedger(http.server.BaseHTTPRequestHandler):
    """Serves a checkpoint, events and proofs over `leaves` (set per test)."""

    leaves = []
    note = ""

    def do_GET(self):
        address = urllib.parse.urlsplit(self.path)
        query = {key: int(value) for key, value in urllib.parse.parse_qsl(address.query)}
        leaves = type(self).leaves
        if self.headers.get("Authorization") != "Bearer secret":
            return self.answer(401, b"{}")
        if address.path == "/v1/checkpoint":
            return self.answer(200, type(self).note.encode())
        if address.path == "/v1/events":
            after = query["after"]
            event = {"position": after + 1, "hash": leaves[after].hex()}
            return self.answer(200, json.dumps({"events": [event]}).encode())
        if address.path == "/v1/proofs/inclusion":
            position, size = query["position"], query["size"]
            body = {
                "position": position,
                "size": size,
                "leaf_hash": vc.leaf_hash(leaves[position - 1]).hex(),
                "hashes": [h.hex() for h in path(position - 1, leaves[:size])],
            }
            return self.answer(200, json.dumps(body).encode())
        if address.path == "/v1/proofs/consistency":
            first, second = query["from"], query["to"]
            hashes = [h.hex() for h in subproof(first, leaves[:second], True)]
            body = {"from": first, "to": second, "hashes": hashes}
            return self.answer(200, json.dumps(body).encode())
        return self.answer(404, b"{}")

    def answer(self, status, body):
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class RunTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = http.server.HTTPServer(("127.0.0.1", 0), FakeLedger)
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        cls.url = f"http://127.0.0.1:{cls.server.server_port}"
        cls.signer = Signer("rotation-ledger/test")

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()

    def serve(self, leaves, note=None):
        FakeLedger.leaves = leaves
        FakeLedger.note = note or self.signer.checkpoint("rotation-ledger/test", leaves)

    def run_verifier(self, *extra, key=None):
        argv = ["--url", self.url, "--token", "secret", "--key", key or self.signer.verifier]
        return vc.main(argv + list(extra))

    def old_checkpoint(self, leaves):
        file = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
        self.addCleanup(os.unlink, file.name)
        file.write(self.signer.checkpoint("rotation-ledger/test", leaves))
        file.close()
        return file.name

    def test_a_log_that_grew_passes(self):
        leaves = event_hashes(37)
        self.serve(leaves)
        old = self.old_checkpoint(leaves[:20])
        self.assertEqual(self.run_verifier("--old", old, "--position", "7"), 0)
        self.assertEqual(self.run_verifier(), 0)

    def test_a_rebuilt_log_fails(self):
        old = self.old_checkpoint(event_hashes(20))
        self.serve(event_hashes(37, changed=4))
        self.assertEqual(self.run_verifier("--old", old), 1)

    def test_a_forged_root_or_another_key_fails(self):
        leaves = event_hashes(9)
        note = self.signer.checkpoint("rotation-ledger/test", leaves)
        root = base64.b64encode(mth(leaves)).decode()
        self.serve(leaves, note.replace(root, base64.b64encode(bytes(32)).decode()))
        self.assertEqual(self.run_verifier(), 1)
        self.serve(leaves)
        self.assertEqual(self.run_verifier(key=Signer("rotation-ledger/test").verifier), 1)

    def test_an_event_outside_the_signed_tree_fails(self):
        leaves = event_hashes(9)
        self.serve(leaves, self.signer.checkpoint("rotation-ledger/test", event_hashes(9, 3)))
        self.assertEqual(self.run_verifier("--position", "1"), 1)


if __name__ == "__main__":
    unittest.main()
