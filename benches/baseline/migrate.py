#!/usr/bin/env python3
"""The comparison baseline: migrate a seeded rekey demo vault the
straightforward way, one user and one grant at a time, with Python and the
`cryptography` package, reading the byte formats from docs/FORMAT.md.

    python migrate.py --vault COPY_OF_vault.db --credentials credentials.json

It migrates the vault file IN PLACE: run it on a copy (`cargo xtask
baseline` makes one).

What it does, per e2ee user of the credentials file (in name order):
  1. password -> master secret: Argon2id as the demo's clients do it
     (crates/rekey-engine/src/password.rs; this step is the vault's own
     business, so FORMAT.md does not specify it);
  2. master secret -> KEK (FORMAT.md §5), and the legacy RSA private key
     (PKCS#8 DER) unwrapped from its `aes256gcm-kek` envelope (§1, §5);
  3. a new P-256 key pair, its scalar wrapped under the same KEK (§5);
  4. for each of the user's legacy grants, one at a time: RSA-OAEP decrypt
     with the hash/MGF the envelope's scheme id names (§6), HPKE-seal the
     secret to the new key as a single-shot `hpke-p256-sha256-aes256gcm`
     grant (§3), INSERT one row;
  5. UPDATE the user's migration state, COMMIT.

Where the rows go: into the vault's own tables, as rekey's migration leaves
them before finalizing. The new key pair is a `key_pair` row in state
`current`; every new grant is a `grant` row with origin `migration` and
legacy = 0; the legacy rows are left untouched (so a copy migrated by this
script still holds everything rekey's `abort` or `finalize` would expect),
and `principal.migration_state` becomes `migrated` (a rerun skips those
users). No bundle signatures, no migration phases, no audit rows.

Roles: the demo's users reach most shared records through roles. A role's
RSA private key is wrapped under a role KEK (32 random bytes, §5), and each
member holds a legacy grant of that KEK (subject: the role's key pair, §2).
The straightforward way: the first member to migrate also migrates the
role - unwraps the role's RSA key with the role KEK, gives the role a new
P-256 key wrapped under the SAME role KEK, and re-wraps every grant of the
role one at a time. Each member's own grant of the role KEK is re-wrapped to
the member's new key like any other grant, with the role's new key pair as
its subject. (rekey instead rotates the role KEK and writes one membership
grant per member; this script keeps it, which is less work, not more.)

At the end it opens a sample of the new grants (every 97th) with the new
private keys, compares them with the RSA-decrypted secrets, exits 1 on any
mismatch, and prints one JSON line:
{"users", "roles", "grants", "role_grants", "seconds", "grants_per_second",
 "checked", "undecryptable", "python", "cryptography", "workers", "form"};
"grants" counts re-wrapped grants (one RSA private operation, one HPKE seal,
one row each), "role_grants" those of them addressed to roles, "seconds" is
the wall time of the migration loop alone.

migrate_parallel.py is the same job done the way a competent engineer would
do it (a process per core, one writer, batched transactions, the batch HPKE
form); it imports the helpers below.
"""

import argparse
import json
import os
import platform
import sqlite3
import sys
import time
import uuid

import cryptography
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

# --- FORMAT.md §1: the envelope ------------------------------------------

MAGIC, VERSION = b"rk", 1
RSA_OAEP_SHA1, RSA_OAEP_SHA256, RSA_OAEP_SHA256_MGF1SHA1 = 0x01, 0x02, 0x03
HPKE_P256, AES256GCM_KEK = 0x10, 0x20
NEW_GRANT_SCHEME = "hpke-p256-sha256-aes256gcm"  # the scheme's name in the database


def header(scheme_id):
    return MAGIC + bytes([VERSION, scheme_id])


def split_envelope(env):
    """(scheme id, body) of an envelope, refusing what §1 refuses."""
    if len(env) < 4 or env[:2] != MAGIC or env[2] != VERSION:
        raise ValueError("not a version-1 rekey envelope")
    return env[3], env[4:]


def uid(text):
    """FORMAT.md: identifiers are the UUID's 16 raw bytes."""
    return uuid.UUID(text).bytes


# --- FORMAT.md §2: subjects ----------------------------------------------

SUBJECT_KIND = {"record_key": 0x01, "private_key": 0x02}


def subject_bytes(kind, subject_id):
    return bytes([SUBJECT_KIND[kind]]) + uid(subject_id)


# --- FORMAT.md §5: private keys under a key-encryption key ---------------


def derive_kek(master, vault, owner):
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"rekey/v1/kek",
        info=b"rekey/v1/kek:private-key" + vault + owner,
    ).derive(master)


def private_key_aad(vault, owner, key_pair):
    return header(AES256GCM_KEK) + b"rekey/v1/private-key" + vault + owner + key_pair


def unwrap_private_key(kek, vault, owner, key_pair, env):
    scheme, body = split_envelope(env)
    if scheme != AES256GCM_KEK:
        raise ValueError(f"private key envelope has scheme {scheme:#04x}")
    aad = private_key_aad(vault, owner, key_pair)
    return AESGCM(kek).decrypt(body[:12], body[12:], aad)


def wrap_private_key(kek, vault, owner, key_pair, secret, nonce=None):
    nonce = nonce if nonce is not None else os.urandom(12)
    aad = private_key_aad(vault, owner, key_pair)
    return header(AES256GCM_KEK) + nonce + AESGCM(kek).encrypt(nonce, secret, aad)


# --- FORMAT.md §6: legacy grants (RSA-OAEP, empty label) -----------------

OAEP = {
    RSA_OAEP_SHA1: padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None),
    RSA_OAEP_SHA256: padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None),
    RSA_OAEP_SHA256_MGF1SHA1: padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA256(), None),
}


def open_legacy_grant(rsa_key, env):
    scheme, body = split_envelope(env)
    return rsa_key.decrypt(body, OAEP[scheme])


# --- FORMAT.md §3: HPKE grants, RFC 9180 base mode composed by hand ------
# DHKEM(P-256, HKDF-SHA256) 0x0010, HKDF-SHA256 0x0001, AES-256-GCM 0x0002.

KEM_SUITE = b"KEM" + (0x0010).to_bytes(2, "big")
HPKE_SUITE = b"HPKE" + b"".join(i.to_bytes(2, "big") for i in (0x0010, 0x0001, 0x0002))


def labeled_extract(suite, salt, label, ikm):
    h = hmac.HMAC(salt or bytes(32), hashes.SHA256())
    h.update(b"HPKE-v1" + suite + label + ikm)
    return h.finalize()


def labeled_expand(suite, prk, label, info, length):
    labeled = length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled).derive(prk)


def sec1(public_key):
    return public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def shared_secret(dh, enc, pk_rm):
    prk = labeled_extract(KEM_SUITE, b"", b"eae_prk", dh)
    return labeled_expand(KEM_SUITE, prk, b"shared_secret", enc + pk_rm, 32)


def key_schedule(shared, info):
    """RFC 9180 §5.1, mode_base: the AEAD key and base nonce."""
    psk_id_hash = labeled_extract(HPKE_SUITE, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(HPKE_SUITE, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = labeled_extract(HPKE_SUITE, shared, b"secret", b"")
    key = labeled_expand(HPKE_SUITE, secret, b"key", context, 32)
    base_nonce = labeled_expand(HPKE_SUITE, secret, b"base_nonce", context, 12)
    return key, base_nonce


def grant_info(vault, recipient, subject):
    return b"rekey/v1/grant" + bytes([HPKE_P256]) + vault + recipient + subject


def seal_grant(pk_r, vault, recipient, subject, secret, sk_e=None):
    sk_e = sk_e or ec.generate_private_key(ec.SECP256R1())
    enc, pk_rm = sec1(sk_e.public_key()), sec1(pk_r)
    shared = shared_secret(sk_e.exchange(ec.ECDH(), pk_r), enc, pk_rm)
    key, nonce = key_schedule(shared, grant_info(vault, recipient, subject))
    aad = header(HPKE_P256)  # sequence number 0: the nonce is the base nonce
    return aad + enc + AESGCM(key).encrypt(nonce, secret, aad)


def open_grant(sk_r, vault, recipient, subject, env):
    scheme, body = split_envelope(env)
    if scheme != HPKE_P256:
        raise ValueError(f"not an HPKE P-256 grant: {scheme:#04x}")
    enc, ct = body[:65], body[65:]
    pk_e = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), enc)
    shared = shared_secret(sk_r.exchange(ec.ECDH(), pk_e), enc, sec1(sk_r.public_key()))
    key, nonce = key_schedule(shared, grant_info(vault, recipient, subject))
    return AESGCM(key).decrypt(nonce, ct, header(scheme))


def expect(ok, what):
    if not ok:
        sys.exit(f"self-check failed: {what}")


def check_worked_examples():
    """This file against FORMAT.md §9, so a format drift fails loudly."""
    vault, recipient = bytes(range(0x00, 0x10)), bytes(range(0x10, 0x20))
    subject = b"\x01" + bytes(range(0x20, 0x30))
    key_pair = bytes(range(0x30, 0x40))
    sk_r = ec.derive_private_key(
        int("b8428563ca8c5f580f3a99eb7cb906e338ff2b6571c18995fc4e64fa34276ccf", 16), ec.SECP256R1()
    )
    sk_e = ec.derive_private_key(
        int("3f5a9f7963ce28371082a68ea6e3583dd1086971628f6722b3e170001883a335", 16), ec.SECP256R1()
    )
    record_key = bytes(range(0x40, 0x60))
    env = seal_grant(sk_r.public_key(), vault, recipient, subject, record_key, sk_e)
    expect(env.hex() == (
        "726b0110041f3bd7026e25cc1df00407f3f025bd6c53af59d43c022f24c908a7f07fb6bf6096bd7fc7d6b4f03c"
        "00631db089338c7f5fd16eeece1943c5b205a5d0a28a481e8062644f9a06319210d941617221fc2825de6912ff"
        "53796413b37b6335d23a8b4fb55d4b5112ee7844dd20aad7898b9a"
    ), "the HPKE grant differs from FORMAT.md §9")
    expect(open_grant(sk_r, vault, recipient, subject, env) == record_key, "an HPKE grant does not open")
    kek = derive_kek(b"rekey worked example: master secret", vault, recipient)
    kek_hex = "cceddc61f2f1c85f740d180e66ea62c6de48837ac02d5c86380129c1d663eab6"
    expect(kek.hex() == kek_hex, "the KEK differs from FORMAT.md §9")
    scalar = sk_r.private_numbers().private_value.to_bytes(32, "big")
    nonce = bytes(range(0xA0, 0xAC))
    wrapped = wrap_private_key(kek, vault, recipient, key_pair, scalar, nonce)
    expect(wrapped.hex() == (
        "726b0120a0a1a2a3a4a5a6a7a8a9aaab04aa212bdb32ee7b22753459c56a0ed5edfb5881099348311ae5761"
        "60f604ab905b4d731c16d7f2dab8840f901517a45"
    ), "the KEK-wrapped key differs from FORMAT.md §9")


# --- The demo's password KDF (crates/rekey-engine/src/password.rs) -------


def master_secret(password, vault, user):
    kdf = Argon2id(salt=b"rekey-demo" + vault + user, length=32, iterations=1, lanes=1, memory_cost=4096)
    return kdf.derive(password.encode())


def user_kek(password, vault, user):
    """An e2ee user's KEK from its password (Argon2id, then §5's HKDF)."""
    return derive_kek(master_secret(password, vault, user), vault, user)


# --- What both scripts share: keys, rows, the vault ----------------------


def load_legacy_key(der):
    """The legacy RSA private key from its PKCS#8 DER.

    The key comes out of an authenticated envelope (AES-GCM, §5): it is the
    key that was stored, so OpenSSL's key check (~90 ms per RSA-2048 key
    here, primality tests) is skipped as cryptography's docs allow."""
    return serialization.load_der_private_key(der, password=None, unsafe_skip_rsa_key_validation=True)


def new_p256_key(kek, vault, owner, key_pair):
    """A new P-256 key pair: (private key, SEC1 public key, scalar under `kek`, §5)."""
    sk = ec.generate_private_key(ec.SECP256R1())
    scalar = sk.private_numbers().private_value.to_bytes(32, "big")
    return sk, sec1(sk.public_key()), wrap_private_key(kek, vault, owner, key_pair, scalar)


def unwrap_p256_key(kek, vault, owner, key_pair, public_key, env):
    """A new P-256 private key from its key pair row; checks the public key."""
    scalar = unwrap_private_key(kek, vault, owner, key_pair, env)
    sk = ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())
    if sec1(sk.public_key()) != public_key:
        raise ValueError("the unwrapped private key does not match its public key")
    return sk


LEGACY_KEY_SQL = "SELECT id, wrapped_private_key FROM key_pair WHERE principal_id = ? AND state = 'legacy'"
LEGACY_GRANTS_SQL = (
    "SELECT id, subject_kind, subject_id, envelope FROM \"grant\" "
    "WHERE recipient_id = ? AND legacy = 1 AND origin = 'legacy' ORDER BY id"
)
INSERT_KEY_PAIR_SQL = (
    "INSERT INTO key_pair (id, principal_id, scheme, public_key, wrapped_private_key, state) "
    "VALUES (?, ?, ?, ?, ?, 'current')"
)
INSERT_GRANT_SQL = (
    "INSERT INTO \"grant\" (id, recipient_id, subject_kind, subject_id, scheme, legacy, "
    "envelope, origin, created_at) VALUES (?, ?, ?, ?, ?, 0, ?, 'migration', ?)"
)
MIGRATED_SQL = "UPDATE principal SET migration_state = 'migrated' WHERE id = ?"


def open_vault(vault_path, credentials_path):
    """(connection, credentials, vault id text) of a legacy demo vault and its
    credentials file; exits on a mismatch or a vault past the legacy phase."""
    with open(credentials_path, encoding="utf-8") as f:
        creds = json.load(f)
    db = sqlite3.connect(vault_path)
    (vault_text,) = db.execute("SELECT vault_id FROM migration WHERE id = 1").fetchone()
    if uid(vault_text) != uid(creds["vault"]):
        sys.exit(f"{credentials_path} belongs to vault {creds['vault']}, not {vault_text}")
    phase = db.execute("SELECT phase FROM migration WHERE id = 1").fetchone()[0]
    if phase != "legacy":
        sys.exit(f"the vault is in phase {phase}: this script migrates a legacy (seeded) vault")
    return db, creds, vault_text


# --- The migration --------------------------------------------------------


class Migrator:
    def __init__(self, db, vault_text, check_every):
        self.db, self.vault_text, self.vault = db, vault_text, uid(vault_text)
        self.check_every, self.samples = check_every, []
        self.grants = self.role_grants = self.roles = self.undecryptable = 0
        self.role_keys = {}  # a role's legacy key pair id -> its new key pair id

    def new_key_pair(self, owner_text, kek):
        """A new P-256 key pair for `owner`, its scalar under `kek` (§5)."""
        kp_text = str(uuid.uuid4())
        sk, public_key, wrapped = new_p256_key(kek, self.vault, uid(owner_text), uid(kp_text))
        self.db.execute(INSERT_KEY_PAIR_SQL, (kp_text, owner_text, NEW_GRANT_SCHEME, public_key, wrapped))
        return sk, kp_text

    def legacy_key(self, owner_text, kek):
        kp_text, wrapped = self.db.execute(LEGACY_KEY_SQL, (owner_text,)).fetchone()
        der = unwrap_private_key(kek, self.vault, uid(owner_text), uid(kp_text), wrapped)
        return load_legacy_key(der), kp_text

    def role_of(self, key_pair_text):
        """The role whose legacy key pair this is, or None."""
        return self.db.execute(
            "SELECT p.id FROM key_pair k JOIN principal p ON p.id = k.principal_id "
            "WHERE k.id = ? AND p.kind = 'role' AND k.state = 'legacy'",
            (key_pair_text,),
        ).fetchone()

    def migrate(self, principal_text, kek, is_role=False):
        """One principal: new key, then every legacy grant to it, one at a time."""
        rsa_key, _ = self.legacy_key(principal_text, kek)
        sk, _ = self.new_key_pair(principal_text, kek)
        pk, recipient = sk.public_key(), uid(principal_text)
        rows = self.db.execute(LEGACY_GRANTS_SQL, (principal_text,)).fetchall()
        for grant_id, kind, subject_id, env in rows:
            try:
                secret = open_legacy_grant(rsa_key, env)
            except ValueError:
                self.undecryptable += 1
                print(f"grant {grant_id} to {principal_text} does not decrypt; left as is", file=sys.stderr)
                continue
            if kind == "private_key":
                role = self.role_of(subject_id)
                if role is not None:  # a role KEK: the role moves with its first member
                    subject_id = self.migrate_role(role[0], subject_id, secret)
            subject = subject_bytes(kind, subject_id)
            new_env = seal_grant(pk, self.vault, recipient, subject, secret)
            now_ms = int(time.time() * 1000)
            self.db.execute(
                INSERT_GRANT_SQL,
                (str(uuid.uuid4()), principal_text, kind, subject_id, NEW_GRANT_SCHEME, new_env, now_ms),
            )
            self.grants += 1
            self.role_grants += is_role
            if self.grants % self.check_every == 0:
                self.samples.append((sk, recipient, subject, new_env, secret))
        self.db.execute(MIGRATED_SQL, (principal_text,))

    def migrate_role(self, role_text, legacy_kp_text, role_kek):
        """The role's new key pair id, migrating the role first if needed."""
        if legacy_kp_text not in self.role_keys:
            (state,) = self.db.execute(
                "SELECT migration_state FROM principal WHERE id = ?", (role_text,)
            ).fetchone()
            if state == "pending":
                self.migrate(role_text, role_kek, is_role=True)
                self.roles += 1
            (self.role_keys[legacy_kp_text],) = self.db.execute(
                "SELECT id FROM key_pair WHERE principal_id = ? AND state = 'current'", (role_text,)
            ).fetchone()
        return self.role_keys[legacy_kp_text]

    def check(self):
        """Open the sampled new grants with the new keys; count mismatches."""
        bad = 0
        for sk, recipient, subject, env, expected in self.samples:
            try:
                ok = open_grant(sk, self.vault, recipient, subject, env) == expected
            except (InvalidTag, ValueError):
                ok = False
            bad += not ok
        return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vault", required=True, help="SQLite file of a seeded demo vault (migrated in place)")
    ap.add_argument("--credentials", required=True, help="its credentials.json from `rekey demo seed`")
    ap.add_argument("--check-every", type=int, default=97, help="open every Nth new grant afterwards")
    args = ap.parse_args()
    check_worked_examples()

    db, creds, vault_text = open_vault(args.vault, args.credentials)

    m = Migrator(db, vault_text, max(1, args.check_every))
    users = 0
    started = time.perf_counter()
    for name in sorted(creds["users"]):
        user = creds["users"][name]
        user_text = str(uuid.UUID(user["id"]))
        state = db.execute("SELECT migration_state FROM principal WHERE id = ?", (user_text,)).fetchone()
        if state is None or state[0] != "pending":
            continue
        kek = user_kek(user["password"], m.vault, uid(user_text))
        try:
            m.migrate(user_text, kek)
        except InvalidTag:
            sys.exit(f"{name}: the password does not unlock the legacy key")
        db.commit()  # one transaction per user
        users += 1
    seconds = time.perf_counter() - started
    db.close()

    bad = m.check()
    print(
        json.dumps(
            {
                "users": users,
                "roles": m.roles,
                "grants": m.grants,
                "role_grants": m.role_grants,
                "seconds": round(seconds, 3),
                "grants_per_second": round(m.grants / seconds, 1) if seconds > 0 else 0.0,
                "checked": len(m.samples),
                "undecryptable": m.undecryptable,
                "python": platform.python_version(),
                "cryptography": cryptography.__version__,
                "workers": 1,
                "form": "single",
            }
        )
    )
    if bad:
        sys.exit(f"{bad} of {len(m.samples)} sampled new grants do not open to their secret")


if __name__ == "__main__":
    main()
