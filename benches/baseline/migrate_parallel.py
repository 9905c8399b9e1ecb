#!/usr/bin/env python3
"""The fair peer: migrate a seeded rekey demo vault as a competent engineer
would with Python and the `cryptography` package - a process per core doing
the crypto, one writer batching rows in transactions, and (by default) the
batch HPKE form of docs/FORMAT.md §4.

    python migrate_parallel.py --vault COPY_OF_vault.db --credentials credentials.json
                               [--workers N] [--form batch|single] [--batch-rows N]

Like migrate.py it migrates the vault file IN PLACE (run it on a copy:
`cargo xtask baseline` makes one), migrates the same principals and writes
the same rows; it imports that script's helpers (formats, the demo's
Argon2id, the row statements).

Work. The parent reads the plan (pending e2ee users of the credentials
file, the pending roles they reach, every principal's legacy grant count)
and hands one task per principal to a pool of `--workers` processes
(default: os.cpu_count()), heaviest first so the run does not end on one
long task. A worker opens its own read-only connection (the vault is in WAL
mode: readers do not wait for the writer) and does all the crypto of its
task: Argon2id and the KEK (§5), the legacy RSA key unwrapped from its
`aes256gcm-kek` envelope, a new P-256 key wrapped under the same KEK, every
legacy grant RSA-OAEP-decrypted (§6) and HPKE-sealed to the new key. It
returns the rows; the parent is the one writer: it inserts each task's
key_pair row, its grant rows (executemany) and its migration state, and
commits every `--batch-rows` rows (a task's rows never straddle two
transactions, so a crash leaves every principal migrated or pending).

Forms. `--form batch` (the default) writes `hpke-p256-sha256-aes256gcm-export`
grants (§4): one encapsulation (one ECDH) per principal, then per grant a key
from the HPKE exporter, a random 12-byte nonce and one AES-GCM seal; every
envelope carries the principal's `enc`, so each opens on its own, as rekey's
`verify` opens them. The new key pairs are labelled with that scheme, as
rekey labels them. `--form single` writes migrate.py's single-shot
`hpke-p256-sha256-aes256gcm` grants (one encapsulation per grant).

Roles. A role must migrate exactly once, and every member's re-wrapped grant
of the role KEK names the role's NEW key pair as its subject (as in
migrate.py, the role keeps its KEK and the new key is wrapped under it).
The parent fixes each pending role's new key pair id before the pool starts
(a UUIDv5 of the vault and the role's legacy key pair, so a rerun after a
crash picks the same id) and makes each role its own task, queued with the
users by weight: no member waits for its role, whatever order the tasks
end in. A role task gets the role KEK the only way a client can, through a
member: the first member in the work order whose legacy grant of the KEK
decrypts (Argon2id, the member's RSA key, one RSA-OAEP decryption; the
member's own task decrypts that grant again). That is one Argon2id, one RSA
key load and one RSA decryption per role that migrate.py does not do (it
migrates a role inside its first member's loop): a few ms per role.

At the end, outside the timed loop, a random sample of the grants written
(1 %, at least 50) is read back from the vault and opened with the new
private keys (unwrapped from the key_pair rows written), and each secret is
compared with its legacy grant opened with the legacy RSA key; the pool
does it by recipient. Any difference, or any sampled grant that does not
open, exits 1. One JSON line, migrate.py's fields plus "workers", "form"
and "batch_rows": "seconds" is the wall time from the plan to the last
commit (pool start included).
"""

import argparse
import json
import multiprocessing
import os
import platform
import random
import sqlite3
import sys
import time
import uuid

import cryptography
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from migrate import (
    HPKE_SUITE,
    INSERT_GRANT_SQL,
    INSERT_KEY_PAIR_SQL,
    LEGACY_GRANTS_SQL,
    LEGACY_KEY_SQL,
    MIGRATED_SQL,
    NEW_GRANT_SCHEME,
    check_worked_examples,
    expect,
    header,
    labeled_expand,
    labeled_extract,
    load_legacy_key,
    new_p256_key,
    open_grant,
    open_legacy_grant,
    open_vault,
    seal_grant,
    sec1,
    shared_secret,
    split_envelope,
    subject_bytes,
    uid,
    unwrap_p256_key,
    unwrap_private_key,
    user_kek,
)

# --- FORMAT.md §4: batch grants (`hpke-p256-sha256-aes256gcm-export`) ----

HPKE_P256_EXPORT = 0x11
BATCH_GRANT_SCHEME = "hpke-p256-sha256-aes256gcm-export"
BATCH_HEADER = header(HPKE_P256_EXPORT)


def batch_info(vault, recipient):
    return b"rekey/v1/batch" + bytes([HPKE_P256_EXPORT]) + vault + recipient


def exporter_secret(shared, info):
    """RFC 9180 §5.1, mode_base: the exporter secret of the context."""
    psk_id_hash = labeled_extract(HPKE_SUITE, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(HPKE_SUITE, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = labeled_extract(HPKE_SUITE, shared, b"secret", b"")
    return labeled_expand(HPKE_SUITE, secret, b"exp", context, 32)


def grant_key(exporter, subject):
    """RFC 9180 §5.3 Export(context, 32) with §4's per-grant context."""
    return labeled_expand(HPKE_SUITE, exporter, b"sec", b"rekey/v1/grant-key" + subject, 32)


class BatchSealer:
    """One encapsulation for a recipient; then one AES-GCM seal per grant."""

    def __init__(self, pk_r, vault, recipient, sk_e=None):
        sk_e = sk_e or ec.generate_private_key(ec.SECP256R1())
        enc = sec1(sk_e.public_key())
        shared = shared_secret(sk_e.exchange(ec.ECDH(), pk_r), enc, sec1(pk_r))
        self.exporter = exporter_secret(shared, batch_info(vault, recipient))
        self.prefix = BATCH_HEADER + enc

    def seal(self, subject, secret, nonce=None):
        nonce = nonce if nonce is not None else os.urandom(12)
        ct = AESGCM(grant_key(self.exporter, subject)).encrypt(nonce, secret, BATCH_HEADER)
        return self.prefix + nonce + ct


class GrantOpener:
    """Opens new grants (either form) with one private key, one
    decapsulation per batch `enc`."""

    def __init__(self, sk_r, vault, recipient):
        self.sk_r, self.vault, self.recipient = sk_r, vault, recipient
        self.exporters = {}

    def open(self, subject, env):
        scheme, body = split_envelope(env)
        if scheme != HPKE_P256_EXPORT:
            return open_grant(self.sk_r, self.vault, self.recipient, subject, env)
        if len(body) < 65 + 12 + 16:
            raise ValueError("a batch grant too short")
        enc, nonce, ct = body[:65], body[65:77], body[77:]
        exporter = self.exporters.get(enc)
        if exporter is None:
            pk_e = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), enc)
            shared = shared_secret(self.sk_r.exchange(ec.ECDH(), pk_e), enc, sec1(self.sk_r.public_key()))
            exporter = self.exporters[enc] = exporter_secret(shared, batch_info(self.vault, self.recipient))
        return AESGCM(grant_key(exporter, subject)).decrypt(nonce, ct, BATCH_HEADER)


def check_batch_worked_example():
    """This file against FORMAT.md §9's `hpke-p256-sha256-aes256gcm-export`."""
    vault, recipient = bytes(range(0x00, 0x10)), bytes(range(0x10, 0x20))
    subject = b"\x01" + bytes(range(0x20, 0x30))
    sk_r = ec.derive_private_key(
        int("b8428563ca8c5f580f3a99eb7cb906e338ff2b6571c18995fc4e64fa34276ccf", 16), ec.SECP256R1()
    )
    sk_e = ec.derive_private_key(
        int("3f5a9f7963ce28371082a68ea6e3583dd1086971628f6722b3e170001883a335", 16), ec.SECP256R1()
    )
    record_key = bytes(range(0x40, 0x60))
    sealer = BatchSealer(sk_r.public_key(), vault, recipient, sk_e)
    expect(
        sealer.exporter.hex() == "f7d3b7ac56c21fef4f07f6d434dae593621351df18ee73792144784e10284ac7",
        "the batch exporter secret differs from FORMAT.md §9",
    )
    env = sealer.seal(subject, record_key, bytes(range(0xA0, 0xAC)))
    expect(env.hex() == (
        "726b0111041f3bd7026e25cc1df00407f3f025bd6c53af59d43c022f24c908a7f07fb6bf6096bd7fc7d6b4f03c"
        "00631db089338c7f5fd16eeece1943c5b205a5d0a28a481ea0a1a2a3a4a5a6a7a8a9aaabcde3a621052bf64686"
        "d4bf74847e32b8c760089c72d9c7b5fc1b2dd75a19659117299302e2e37eaafbdb909c521c482d"
    ), "the batch grant differs from FORMAT.md §9")
    expect(GrantOpener(sk_r, vault, recipient).open(subject, env) == record_key, "a batch grant does not open")


# --- The workers ------------------------------------------------------------

W = {}  # per worker process: its read-only connection and the plan's constants


def init_worker(vault_path, vault_text, form, role_keys):
    db = sqlite3.connect(f"file:{vault_path}?mode=ro", uri=True, timeout=60)
    W.update(db=db, vault=uid(vault_text), form=form, role_keys=role_keys)


def legacy_rsa_key(principal, kek):
    kp_text, wrapped = W["db"].execute(LEGACY_KEY_SQL, (principal,)).fetchone()
    return load_legacy_key(unwrap_private_key(kek, W["vault"], uid(principal), uid(kp_text), wrapped))


def role_kek(role_legacy_kp, members):
    """The role's KEK, from the first member whose legacy grant of it opens."""
    for member, password in members:
        rsa_key = legacy_rsa_key(member, user_kek(password, W["vault"], uid(member)))
        row = W["db"].execute(
            "SELECT envelope FROM \"grant\" WHERE recipient_id = ? AND subject_kind = 'private_key' "
            "AND subject_id = ? AND legacy = 1 AND origin = 'legacy'",
            (member, role_legacy_kp),
        ).fetchone()
        try:
            return open_legacy_grant(rsa_key, row[0])
        except ValueError:
            continue
    return None


def migrate_task(task):
    """One principal's crypto: its rows for the writer, nothing written here.

    ("user", id, password) or ("role", id, legacy key pair, new key pair,
    [(member id, password), ...])."""
    vault, role_keys = W["vault"], W["role_keys"]
    if task[0] == "user":
        _, principal, password = task
        kek = user_kek(password, vault, uid(principal))
        kp_text = str(uuid.uuid4())
    else:
        _, principal, legacy_kp, kp_text, members = task
        kek = role_kek(legacy_kp, members)
        if kek is None:
            return {"principal": principal, "role": True, "kek_missing": True}
    try:
        rsa_key = legacy_rsa_key(principal, kek)
    except InvalidTag:
        return {"principal": principal, "role": task[0] == "role", "locked": True}
    recipient = uid(principal)
    sk, public_key, wrapped = new_p256_key(kek, vault, recipient, uid(kp_text))
    pk = sk.public_key()
    batch = W["form"] == "batch"
    scheme = BATCH_GRANT_SCHEME if batch else NEW_GRANT_SCHEME
    sealer = BatchSealer(pk, vault, recipient) if batch else None
    now_ms = int(time.time() * 1000)
    rows, legacy_ids, undecryptable = [], [], []
    for grant_id, kind, subject_id, env in W["db"].execute(LEGACY_GRANTS_SQL, (principal,)).fetchall():
        try:
            secret = open_legacy_grant(rsa_key, env)
        except ValueError:
            undecryptable.append(grant_id)
            continue
        if kind == "private_key":  # a role KEK: the subject is the role's new key pair
            subject_id = role_keys.get(subject_id, subject_id)
        subject = subject_bytes(kind, subject_id)
        if batch:
            new_env = sealer.seal(subject, secret)
        else:
            new_env = seal_grant(pk, vault, recipient, subject, secret)
        rows.append((str(uuid.uuid4()), principal, kind, subject_id, scheme, new_env, now_ms))
        legacy_ids.append(grant_id)
    return {
        "principal": principal,
        "role": task[0] == "role",
        "key_pair": (kp_text, principal, scheme, public_key, wrapped),
        "grants": rows,
        "legacy_ids": legacy_ids,
        "undecryptable": undecryptable,
    }


def check_task(task):
    """Opens sampled new grants of one recipient with its new private key and
    their legacy grants with its legacy RSA key: the mismatches."""
    principal, source, samples = task
    vault, recipient = W["vault"], uid(principal)
    if source[0] == "user":
        kek = user_kek(source[1], vault, recipient)
    else:
        kek = role_kek(source[1], source[2])
    rsa_key = legacy_rsa_key(principal, kek)
    kp_text, public_key, wrapped = W["db"].execute(
        "SELECT id, public_key, wrapped_private_key FROM key_pair WHERE principal_id = ? AND state = 'current'",
        (principal,),
    ).fetchone()
    opener = GrantOpener(unwrap_p256_key(kek, vault, recipient, uid(kp_text), public_key, wrapped), vault, recipient)
    bad = []
    for grant_id, kind, subject_id, new_env, legacy_env in samples:
        try:
            ok = opener.open(subject_bytes(kind, subject_id), new_env) == open_legacy_grant(rsa_key, legacy_env)
        except (InvalidTag, ValueError) as e:
            ok = False
            grant_id = f"{grant_id} ({type(e).__name__})"
        if not ok:
            bad.append(grant_id)
    return bad


# --- The parent: the plan, the writer, the check ------------------------------


def plan(db, creds, vault_text):
    """The tasks, heaviest first (roles before users at equal weight), and the
    map from each role's legacy key pair to its new one."""
    state = dict(db.execute("SELECT id, migration_state FROM principal"))
    weight = dict(
        db.execute(
            "SELECT recipient_id, count(*) FROM \"grant\" WHERE legacy = 1 AND origin = 'legacy' "
            "GROUP BY recipient_id"
        )
    )
    users = []  # (id, password), in name order: the work order of roles' members
    for name in sorted(creds["users"]):
        user = creds["users"][name]
        user_text = str(uuid.UUID(user["id"]))
        if state.get(user_text) == "pending":
            users.append((user_text, user["password"]))
    order = {u: i for i, (u, _) in enumerate(users)}
    passwords = dict(users)
    role_keys, members = {}, {}
    for legacy_kp, role, role_state, current_kp in db.execute(
        "SELECT k.id, p.id, p.migration_state, "
        "(SELECT c.id FROM key_pair c WHERE c.principal_id = p.id AND c.state = 'current') "
        "FROM key_pair k JOIN principal p ON p.id = k.principal_id "
        "WHERE p.kind = 'role' AND k.state = 'legacy'"
    ):
        if role_state == "pending":
            new_kp = str(uuid.uuid5(uuid.UUID(vault_text), f"rekey-peer role key pair {legacy_kp}"))
            role_keys[legacy_kp] = new_kp
            members[legacy_kp] = (role, new_kp, [])
        elif current_kp is not None:
            role_keys[legacy_kp] = current_kp
    for member, legacy_kp in db.execute(
        "SELECT recipient_id, subject_id FROM \"grant\" "
        "WHERE subject_kind = 'private_key' AND legacy = 1 AND origin = 'legacy'"
    ):
        if legacy_kp in members and member in order:
            members[legacy_kp][2].append(member)
    tasks, role_sources = [], {}
    for legacy_kp, (role, new_kp, held_by) in members.items():
        if not held_by:  # no pending e2ee member: migrate.py would not reach it either
            del role_keys[legacy_kp]
            continue
        held_by.sort(key=order.get)
        source = [(m, passwords[m]) for m in held_by]
        tasks.append((weight.get(role, 0), 1, ("role", role, legacy_kp, new_kp, source)))
        role_sources[role] = ("role", legacy_kp, source)
    tasks += [(weight.get(u, 0), 0, ("user", u, pw)) for u, pw in users]
    tasks.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return [t[2] for t in tasks], role_keys, role_sources, passwords


def sample_check(pool, db, written, role_sources, passwords, fraction, minimum):
    """Reads a random sample of the written grants back and has the pool open
    them: (checked, mismatching grant ids)."""
    n = min(len(written), max(minimum, round(len(written) * fraction)))
    picked = random.sample(written, n)
    by_recipient = {}
    for i in range(0, len(picked), 500):
        chunk = picked[i : i + 500]
        legacy_of = dict(chunk)
        marks = ",".join("?" * len(chunk))
        new_rows = db.execute(
            f"SELECT id, recipient_id, subject_kind, subject_id, envelope FROM \"grant\" WHERE id IN ({marks})",
            [new for new, _ in chunk],
        ).fetchall()
        legacy_env = dict(
            db.execute(
                f"SELECT id, envelope FROM \"grant\" WHERE id IN ({marks})", [old for _, old in chunk]
            ).fetchall()
        )
        if len(new_rows) != len(chunk):
            sys.exit(f"{len(chunk) - len(new_rows)} written grants are missing from the vault")
        for gid, recipient, kind, subject_id, env in new_rows:
            by_recipient.setdefault(recipient, []).append((gid, kind, subject_id, env, legacy_env[legacy_of[gid]]))
    tasks = []
    for recipient, samples in by_recipient.items():
        source = role_sources.get(recipient) or ("user", passwords[recipient])
        tasks.append((recipient, source, samples))
    bad = [g for found in pool.imap_unordered(check_task, tasks) for g in found]
    return n, bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vault", required=True, help="SQLite file of a seeded demo vault (migrated in place)")
    ap.add_argument("--credentials", required=True, help="its credentials.json from `rekey demo seed`")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: a core each)")
    ap.add_argument("--form", choices=("batch", "single"), default="batch", help="FORMAT.md §4 batch grants or §3 single-shot")
    ap.add_argument("--batch-rows", type=int, default=5000, help="commit once this many rows are pending")
    ap.add_argument("--check-fraction", type=float, default=0.01, help="share of the new grants opened afterwards")
    ap.add_argument("--check-min", type=int, default=50, help="at least this many")
    args = ap.parse_args()
    check_worked_examples()
    check_batch_worked_example()
    workers = max(1, args.workers)

    db, creds, vault_text = open_vault(args.vault, args.credentials)
    db.execute("PRAGMA busy_timeout = 60000")
    if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        sys.exit("the vault is not in WAL mode: the workers' reads would wait for the writer")

    started = time.perf_counter()
    tasks, role_keys, role_sources, passwords = plan(db, creds, vault_text)
    users = roles = grants = role_grants = 0
    undecryptable, written, pending_rows = [], [], 0
    with multiprocessing.Pool(workers, init_worker, (args.vault, vault_text, args.form, role_keys)) as pool:
        for r in pool.imap_unordered(migrate_task, tasks):
            who = f"{'role' if r['role'] else 'user'} {r['principal']}"
            if r.get("locked"):
                sys.exit(f"{who}: its KEK does not unlock its legacy key")
            if r.get("kek_missing"):
                sys.exit(f"{who}: no member's legacy grant of its KEK decrypts")
            db.execute(INSERT_KEY_PAIR_SQL, r["key_pair"])
            db.executemany(INSERT_GRANT_SQL, r["grants"])
            db.execute(MIGRATED_SQL, (r["principal"],))
            for g in r["undecryptable"]:
                print(f"grant {g} to {r['principal']} does not decrypt; left as is", file=sys.stderr)
            n = len(r["grants"])
            grants += n
            if r["role"]:
                roles += 1
                role_grants += n
            else:
                users += 1
            undecryptable += r["undecryptable"]
            written += [(row[0], old) for row, old in zip(r["grants"], r["legacy_ids"])]
            pending_rows += n + 2
            if pending_rows >= args.batch_rows:
                db.commit()
                pending_rows = 0
        db.commit()
        seconds = time.perf_counter() - started
        checked, bad = sample_check(pool, db, written, role_sources, passwords, args.check_fraction, args.check_min)
    db.close()

    print(
        json.dumps(
            {
                "users": users,
                "roles": roles,
                "grants": grants,
                "role_grants": role_grants,
                "seconds": round(seconds, 3),
                "grants_per_second": round(grants / seconds, 1) if seconds > 0 else 0.0,
                "checked": checked,
                "undecryptable": len(undecryptable),
                "python": platform.python_version(),
                "cryptography": cryptography.__version__,
                "workers": workers,
                "form": args.form,
                "batch_rows": args.batch_rows,
            }
        )
    )
    if bad:
        sys.exit(f"{len(bad)} of {checked} sampled new grants do not open to their legacy secret: {bad[:10]}")


if __name__ == "__main__":
    main()
