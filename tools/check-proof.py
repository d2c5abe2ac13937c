#!/usr/bin/env python3
"""Check a kafka-outbox inclusion proof offline, with the Python standard library only.

    python3 tools/check-proof.py proof.json --public-key audit.key.pub

A second, independent implementation of the checker in docs/hash-chain.md ("Inclusion proofs"),
written from that text: the event's hash from its canonical bytes, the chain links up to the head,
the RFC 6962 Merkle audit path from the head's leaf to the checkpoint root, and the checkpoint's
Ed25519 signature (RFC 8032 verification written out below; only SHA-512 and SHA-256 come from
hashlib). Exit code 0 when the proof holds, 1 when it does not, 2 on a usage error.
"""

import base64
import binascii
import hashlib
import json
import re
import sys

# ---------------------------------------------------------------------------------------------------
# Ed25519 verification (RFC 8032 section 5.1.7, after the reference code in section 6)

_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_Q = 2**252 + 27742317777372353535851937790883648493
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _add(a, b):
    # Extended twisted Edwards coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, x*y = T/Z.
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % _P
    bb = (y1 + x1) * (y2 + x2) % _P
    cc = 2 * t1 * t2 * _D % _P
    dd = 2 * z1 * z2 % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s, pt):
    acc = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            acc = _add(acc, pt)
        pt = _add(pt, pt)
        s >>= 1
    return acc


def _equal(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % _P == 0 and (a[1] * b[2] - b[1] * a[2]) % _P == 0


def _recover_x(y, sign):
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _decompress(b):
    if len(b) != 32:
        return None
    y = int.from_bytes(b, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0)
_G = (_GX, _GY, 1, _GX * _GY % _P)


def ed25519_verify(public, message, signature):
    """True when `signature` (64 bytes) is a valid Ed25519 signature of `message` by `public` (32 bytes)."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a = _decompress(public)
    r = _decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _Q:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % _Q
    return _equal(_mul(s, _G), _add(r, _mul(h, a)))


# ---------------------------------------------------------------------------------------------------
# The proof

FORMAT = "kafka-outbox inclusion proof v1"
SIGNING_CONTEXT = "kafka-outbox checkpoint v1"
FIELDS = [
    "event_id", "aggregate_type", "aggregate_id", "aggregate_version", "event_type", "schema_version", "occurred_at",
    "actor_id", "trace_id", "correlation_id", "causation_id", "traceparent", "payload",
]
HEX64 = re.compile(r"[0-9a-f]{64}")
DECIMAL = re.compile(r"0|[1-9][0-9]*")
KEY_ID = re.compile(r"[0-9a-f]{16}")
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
# An Ed25519 SubjectPublicKeyInfo is this 12-byte DER prefix followed by the raw 32-byte key.
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


class ProofError(Exception):
    pass


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def netstring(text):
    b = text.encode("utf-8")
    return str(len(b)).encode("ascii") + b":" + b + b","


def leaf_hash(aggregate_type, aggregate_id, version, head_hash):
    leaf = netstring(aggregate_type) + netstring(aggregate_id) + netstring(str(version)) + netstring(head_hash.hex())
    return sha256(b"\x00", leaf)


def node_hash(left, right):
    return sha256(b"\x01", left, right)


def root_from_path(leaf, index, size, path):
    """RFC 9162 section 2.1.3.2; None when the path does not fit leaf `index` of a tree of `size`."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def decode_canonical(data, where):
    """The 13 netstrings of a canonical encoding (None for the NULL marker `-,`)."""
    out, i = [], 0
    while i < len(data):
        if data[i:i + 2] == b"-,":
            out.append(None)
            i += 2
            continue
        colon = data.find(b":", i)
        length = data[i:colon].decode("latin-1") if colon >= 0 else ""
        if not DECIMAL.fullmatch(length):
            raise ProofError("%s: not a sequence of netstrings at byte %d" % (where, i))
        end = colon + 1 + int(length)
        if end >= len(data) or data[end:end + 1] != b",":
            raise ProofError("%s: netstring at byte %d does not end with a comma" % (where, i))
        try:
            out.append(data[colon + 1:end].decode("utf-8"))
        except UnicodeDecodeError:
            raise ProofError("%s: field %d is not UTF-8" % (where, len(out) + 1))
        i = end + 1
    if len(out) != len(FIELDS):
        raise ProofError("%s: %d fields, expected %d" % (where, len(out), len(FIELDS)))
    return out


def _object(value, where, keys):
    if not isinstance(value, dict):
        raise ProofError("%s is not an object" % where)
    if sorted(value.keys()) != sorted(keys):
        raise ProofError("%s has the fields %s, expected %s" % (where, sorted(value.keys()), sorted(keys)))
    return value


def _str(obj, key, where, pattern=None):
    v = obj[key]
    if not isinstance(v, str) or (pattern is not None and not pattern.fullmatch(v)):
        raise ProofError("%s.%s is missing or malformed" % (where, key))
    return v


def _int(obj, key, where):
    v = obj[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v > 2**53 - 1:
        raise ProofError("%s.%s is not a non-negative integer" % (where, key))
    return v


def _utf8(text, where):
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ProofError("%s is not valid Unicode" % where)


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ProofError("a JSON object repeats a field")
    return dict(pairs)


def _reject_constant(name):
    raise ProofError("the proof contains %s" % name)


def public_key_from_pem(pem_text):
    body = "".join(line.strip() for line in pem_text.splitlines() if line.strip() and not line.startswith("-----"))
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ProofError("the public key is not PEM")
    if len(der) != 44 or der[:12] != SPKI_PREFIX:
        raise ProofError("the public key is not an Ed25519 public key (SPKI)")
    return der[12:]


def check_proof(proof_bytes, public_key):
    """Check a proof (its file's bytes) against a raw 32-byte Ed25519 public key; returns a summary or raises ProofError."""
    try:
        text = proof_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise ProofError("the proof is not UTF-8")
    try:
        proof = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except ValueError as e:
        if isinstance(e, ProofError):
            raise
        raise ProofError("the proof is not JSON")
    p = _object(proof, "proof", ["format", "event", "chain", "merkle", "checkpoint"])
    if p["format"] != FORMAT:
        raise ProofError("proof.format is not %r" % FORMAT)

    # 1. The event: its canonical bytes name it, and hash to its hash.
    ev = _object(p["event"], "event", ["aggregateType", "aggregateId", "version", "eventId", "canonical", "prevHash", "hash"])
    agg_type = _str(ev, "aggregateType", "event")
    agg_id = _str(ev, "aggregateId", "event")
    version = _str(ev, "version", "event", DECIMAL)
    event_id = _str(ev, "eventId", "event")
    prev_hash = bytes.fromhex(_str(ev, "prevHash", "event", HEX64))
    canonical = _utf8(_str(ev, "canonical", "event"), "event.canonical")
    fields = decode_canonical(canonical, "event.canonical")
    for i, want in enumerate([event_id, agg_type, agg_id, version]):
        if fields[i] != want:
            raise ProofError("event.canonical: %s is %r, the proof names %r" % (FIELDS[i], fields[i], want))
    if version == "0":
        raise ProofError("event.version is 0")
    if version == "1" and prev_hash != bytes(32):
        raise ProofError("event: version 1 must link to the zero hash")
    h = sha256(prev_hash, canonical)
    if h.hex() != _str(ev, "hash", "event", HEX64):
        raise ProofError("event: hash is not SHA-256(prevHash || canonical) = %s" % h.hex())

    # 2. The chain from the event to the aggregate's head as of the checkpoint.
    if not isinstance(p["chain"], list):
        raise ProofError("proof.chain is not an array")
    head_version = int(version)
    for i, link in enumerate(p["chain"]):
        where = "chain[%d]" % i
        l = _object(link, where, ["version", "canonical", "hash"])
        v = _str(l, "version", where, DECIMAL)
        if int(v) != head_version + 1:
            raise ProofError("%s: version %s does not follow version %d" % (where, v, head_version))
        data = _utf8(_str(l, "canonical", where), where + ".canonical")
        f = decode_canonical(data, where + ".canonical")
        if f[1] != agg_type or f[2] != agg_id or f[3] != v:
            raise ProofError("%s.canonical is not version %s of the same aggregate" % (where, v))
        h = sha256(h, data)
        if h.hex() != _str(l, "hash", where, HEX64):
            raise ProofError("%s: hash is not SHA-256(previous hash || canonical) = %s" % (where, h.hex()))
        head_version = int(v)

    # 3. The head's leaf, through the audit path, to the checkpoint's root.
    m = _object(p["merkle"], "merkle", ["leafIndex", "treeSize", "path"])
    leaf_index = _int(m, "leafIndex", "merkle")
    tree_size = _int(m, "treeSize", "merkle")
    if not isinstance(m["path"], list) or any(not isinstance(x, str) or not HEX64.fullmatch(x) for x in m["path"]):
        raise ProofError("merkle.path is not a list of 64-hex-digit hashes")
    c = _object(p["checkpoint"], "checkpoint", ["format", "schema", "coveredId", "eventCount", "aggregateCount", "root", "timestamp", "keyId", "signature"])
    if c["format"] != 1 or isinstance(c["format"], bool):
        raise ProofError("checkpoint.format is not 1")
    schema = _str(c, "schema", "checkpoint")
    covered_id = _str(c, "coveredId", "checkpoint", DECIMAL)
    event_count = _str(c, "eventCount", "checkpoint", DECIMAL)
    aggregate_count = _int(c, "aggregateCount", "checkpoint")
    root = _str(c, "root", "checkpoint", HEX64)
    timestamp = _str(c, "timestamp", "checkpoint")
    key_id = _str(c, "keyId", "checkpoint", KEY_ID)
    sig_text = _str(c, "signature", "checkpoint", BASE64)
    try:
        signature = base64.b64decode(sig_text, validate=True)
    except (binascii.Error, ValueError):
        raise ProofError("checkpoint.signature is not base64")
    if len(signature) != 64 or base64.b64encode(signature).decode("ascii") != sig_text:
        raise ProofError("checkpoint.signature is not the base64 of 64 bytes")
    if tree_size != aggregate_count:
        raise ProofError("merkle.treeSize %d is not the checkpoint's aggregateCount %d" % (tree_size, aggregate_count))
    r = root_from_path(leaf_hash(agg_type, agg_id, head_version, h), leaf_index, tree_size, [bytes.fromhex(x) for x in m["path"]])
    if r is None:
        raise ProofError("merkle.path does not fit leaf %d of a tree of %d" % (leaf_index, tree_size))
    if r.hex() != root:
        raise ProofError("the Merkle path leads to root %s, not to the checkpoint's root %s" % (r.hex(), root))

    # 4. The checkpoint's signature, by the given key.
    given_key_id = hashlib.sha256(public_key).hexdigest()[:16]
    if key_id != given_key_id:
        raise ProofError("the checkpoint names key %s, the public key given is %s" % (key_id, given_key_id))
    message = b"".join(netstring(x) for x in [SIGNING_CONTEXT, schema, covered_id, event_count, str(aggregate_count), root, timestamp, key_id])
    if not ed25519_verify(public_key, message, signature):
        raise ProofError("the checkpoint signature does not verify")
    return {
        "aggregate": "%s/%s" % (agg_type, agg_id),
        "version": version,
        "eventId": event_id,
        "headVersion": head_version,
        "fields": dict(zip(FIELDS, fields)),
        "checkpoint": {"schema": schema, "coveredId": covered_id, "timestamp": timestamp, "keyId": key_id, "root": root},
    }


def main(argv):
    args, key_file = [], None
    i = 0
    while i < len(argv):
        if argv[i] == "--public-key" and i + 1 < len(argv):
            key_file = argv[i + 1]
            i += 2
        else:
            args.append(argv[i])
            i += 1
    if len(args) != 1 or key_file is None:
        sys.stderr.write("usage: check-proof.py <proof.json> --public-key <public key PEM>\n")
        return 2
    try:
        with open(key_file, "r", encoding="ascii") as f:
            public_key = public_key_from_pem(f.read())
        with open(args[0], "rb") as f:
            summary = check_proof(f.read(), public_key)
    except (ProofError, OSError, UnicodeDecodeError) as e:
        sys.stderr.write("proof does NOT hold: %s\n" % e)
        return 1
    c = summary["checkpoint"]
    print("proof holds: %s v%s (event %s) is in the history signed by key %s" % (summary["aggregate"], summary["version"], summary["eventId"], c["keyId"]))
    print("  checkpoint  schema %s, covered id %s, taken %s, root %s" % (c["schema"], c["coveredId"], c["timestamp"], c["root"]))
    print("  chain       v%s..v%d (head as of the checkpoint)" % (summary["version"], summary["headVersion"]))
    for k, v in summary["fields"].items():
        print("  %-17s %s" % (k, "NULL" if v is None else v))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
