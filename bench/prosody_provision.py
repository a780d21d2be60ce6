"""Write benchmark accounts and mutual rosters straight into Prosody's file storage.

Prosody 0.12's ``internal_hashed`` accounts hold SCRAM-SHA-1 keys (hex) with a salt string and
an iteration count; rosters are Lua tables. Writing the files takes seconds where
``prosodyctl register`` takes a process start per account. Every account gets the same
password, salt and keys (computed once): fine for a benchmark, never for real accounts.

Usage: python bench/prosody_provision.py DATA_DIR --domain localhost --users N --contacts M
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import re
from pathlib import Path

from roost.bench.provision import contacts_of  # the same rosters as `roost bench provision`


def _escape(name: str) -> str:
    """Prosody's datamanager file-name encoding: every non-alphanumeric byte as %xx."""
    return re.sub(r"[^A-Za-z0-9]", lambda m: f"%{ord(m.group()):02x}", name)


def scram_sha1(password: str, salt: str, iterations: int) -> tuple[str, str]:
    salted = hashlib.pbkdf2_hmac("sha1", password.encode(), salt.encode(), iterations)
    client_key = hmac.new(salted, b"Client Key", "sha1").digest()
    stored_key = hashlib.sha1(client_key).hexdigest()
    server_key = hmac.new(salted, b"Server Key", "sha1").hexdigest()
    return stored_key, server_key


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data_dir", type=Path)
    p.add_argument("--domain", default="localhost")
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--contacts", type=int, default=0)
    p.add_argument("--prefix", default="bench")
    p.add_argument("--password", default="bench")
    p.add_argument("--iterations", type=int, default=10000)
    args = p.parse_args()

    salt = "5881b4fb-1161-4779-813c-ee60fdc43b54"
    stored, server = scram_sha1(args.password, salt, args.iterations)
    host = args.data_dir / _escape(args.domain)
    accounts, rosters = host / "accounts", host / "roster"
    accounts.mkdir(parents=True, exist_ok=True)
    rosters.mkdir(parents=True, exist_ok=True)
    account = (
        "return {\n"
        f'\t["server_key"] = "{server}";\n'
        f'\t["salt"] = "{salt}";\n'
        f'\t["iteration_count"] = {args.iterations};\n'
        f'\t["stored_key"] = "{stored}";\n'
        "};\n"
    )
    for i in range(args.users):
        user = f"{args.prefix}{i}"
        (accounts / f"{_escape(user)}.dat").write_text(account)
        if not args.contacts:
            continue
        lines = ["return {", '\t[false] = { ["version"] = 1; ["pending"] = {}; };']
        for j in contacts_of(i, args.users, args.contacts):
            lines.append(
                f'\t["{args.prefix}{j}@{args.domain}"] = '
                '{ ["subscription"] = "both"; ["groups"] = {}; };'
            )
        lines.append("};")
        (rosters / f"{_escape(user)}.dat").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.users} Prosody accounts ({args.contacts} contacts each) in {host}")


if __name__ == "__main__":
    main()
