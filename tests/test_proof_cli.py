"""`settleproof verify` and `settleproof signers` on real files: exit codes, output and reasons."""

import json
import subprocess  # nosec: we run our own console script
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from click.testing import CliRunner, Result
from eth_account import Account

from packages.settleproof.skills.settlement_abci import attestation
from packages.settleproof.skills.settlement_abci.matching import Settlement
from packages.settleproof.skills.settlement_abci.tests.strategies import make_invoice, make_transfer
from packages.settleproof.skills.settlement_abci.webhook import build_event, signed_headers
from settleproof.cli import main
from settleproof.proof_cli import SIGNERS_FILE, parse_headers


CHAIN_ID = 31337
KEYS = sorted((Account.create() for _ in range(4)), key=lambda k: int(k.address, 16))
EVENT = build_event(Settlement(make_invoice(uuid="inv-7"), make_transfer(value=5000)), 1_700_000_000, 12)
BODY = EVENT.body.encode()


def run(*args: str) -> Result:
    """`settleproof ...` in-process."""
    return CliRunner().invoke(main, list(args))


def document() -> Dict[str, Any]:
    """The signer document, built by the command itself."""
    built = run("signers", "--chain-id", str(CHAIN_ID), "--threshold", "3",
                *[arg for k in reversed(KEYS) for arg in ("--signer", k.address.lower())])
    assert built.exit_code == 0, built.output
    return dict(json.loads(built.output))


def request_headers(doc: Dict[str, Any], keys: List[Any]) -> Dict[str, str]:
    """Everything the keeper sends: Standard Webhooks headers plus the proof."""
    digest = attestation.settlement_digest(BODY, doc["chain_id"], doc["signer_set"])
    proof = attestation.signatures_header({k.address: k.unsafe_sign_hash(digest).signature.to_0x_hex() for k in keys})
    secret = "whsec_" + "c2V0dGxlcHJvb2YtdGVzdC1zZWNyZXQtMzJieXRlcyE="
    return {**signed_headers(EVENT, [secret], 1_700_000_100),
            "settleproof-signatures": proof, "settleproof-signer-set": doc["signer_set"]}


@pytest.fixture
def files(tmp_path: Path) -> Dict[str, Path]:
    """A saved request (body, headers as lines and as JSON) and the pinned document."""
    doc = document()
    given = request_headers(doc, KEYS[:3])
    paths = {name: tmp_path / name for name in ("body.json", "headers.txt", "headers.json", "signers.json")}
    paths["body.json"].write_bytes(BODY)
    paths["headers.txt"].write_text("# saved by the merchant\n" + "".join(f"{k}: {v}\n" for k, v in given.items()))
    paths["headers.json"].write_text(json.dumps(given))
    paths["signers.json"].write_text(json.dumps(doc))
    return paths


@pytest.mark.parametrize("headers_file", ["headers.txt", "headers.json"])
def test_verify_prints_the_event_id(files: Dict[str, Path], headers_file: str) -> None:
    """Exit 0 and the event id, for either headers format."""
    done = run("verify", "--signers", str(files["signers.json"]), str(files["body.json"]), str(files[headers_file]))
    assert done.exit_code == 0, done.output
    assert done.output == EVENT.id + "\n"


def test_verify_refuses_a_changed_body_with_exit_1_and_the_reason(files: Dict[str, Path]) -> None:
    """A changed amount: the signatures recover to outsiders."""
    files["body.json"].write_bytes(BODY.replace(b'"amount":"5000"', b'"amount":"5001"'))
    done = run("verify", "--signers", str(files["signers.json"]), str(files["body.json"]), str(files["headers.txt"]))
    assert done.exit_code == 1
    assert "not a settlement: signature 1 recovers to" in done.output


def test_verify_with_an_unpinned_set_then_with_both_documents(files: Dict[str, Path], tmp_path: Path) -> None:
    """A request under another set fails against the old pin and passes once both are pinned (a JSON array)."""
    new_doc = attestation.signer_document(CHAIN_ID, 2, [k.address for k in KEYS[:3]])
    files["headers.json"].write_text(json.dumps(request_headers(new_doc, KEYS[1:3])))
    args = [str(files["body.json"]), str(files["headers.json"])]
    done = run("verify", "--signers", str(files["signers.json"]), *args)
    assert done.exit_code == 1 and "is not pinned" in done.output
    both = tmp_path / "both.json"
    both.write_text(json.dumps([json.loads(files["signers.json"].read_text()), new_doc]))
    assert run("verify", "--signers", str(both), *args).exit_code == 0
    new_file = tmp_path / "new.json"
    new_file.write_text(json.dumps(new_doc))
    assert run("verify", "--signers", str(files["signers.json"]), "--signers", str(new_file), *args).exit_code == 0


@pytest.mark.parametrize("name, content, reason", [
    ("headers.txt", "settleproof-signatures 0x12\n", "line 1 is not `Name: value`"),
    ("headers.txt", "a: 1\nA: 2\n", "A given twice"),
    ("headers.json", "{\"a\": 1}", "object of strings"),
    ("signers.json", "{", "is not JSON"),
    ("signers.json", "{}", "chain_id"),
])
def test_verify_refuses_malformed_files_with_exit_1(files: Dict[str, Path], name: str, content: str,
                                                    reason: str) -> None:
    """Bad input files are reasons too, never tracebacks."""
    files[name].write_text(content)
    headers_file = files["headers.json" if name == "headers.json" else "headers.txt"]
    done = run("verify", "--signers", str(files["signers.json"]), str(files["body.json"]), str(headers_file))
    assert done.exit_code == 1
    assert reason in done.output


def test_verify_with_a_missing_file_exits_1(files: Dict[str, Path], tmp_path: Path) -> None:
    """An unreadable body file is named."""
    done = run("verify", "--signers", str(files["signers.json"]), str(tmp_path / "nope"), str(files["headers.txt"]))
    assert done.exit_code == 1 and "cannot read" in done.output


def test_signers_reads_the_data_dir_document(files: Dict[str, Path], tmp_path: Path) -> None:
    """`settleproof signers --data-dir D` prints D/signers.json, checked."""
    data_dir = tmp_path / "agent"
    data_dir.mkdir()
    done = run("signers", "--data-dir", str(data_dir))
    assert done.exit_code == 1 and "no signer document" in done.output
    (data_dir / SIGNERS_FILE).write_text(files["signers.json"].read_text())
    done = run("signers", "--data-dir", str(data_dir))
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == json.loads(files["signers.json"].read_text())
    (data_dir / SIGNERS_FILE).write_text(json.dumps({**json.loads(done.output), "threshold": 1}))
    done = run("signers", "--data-dir", str(data_dir))
    assert done.exit_code == 1 and "signer_set is not the digest" in done.output


def test_signers_builds_writes_and_refuses(tmp_path: Path) -> None:
    """Built documents are the agent's own `signer_document`; --output writes the same; bad input exits."""
    out = tmp_path / "pin.json"
    args = ["--chain-id", "1", "--threshold", "2", "--signer", KEYS[1].address, "--signer", KEYS[0].address]
    done = run("signers", *args, "--output", str(out))
    assert done.exit_code == 0, done.output
    expected = attestation.signer_document(1, 2, [KEYS[0].address, KEYS[1].address])
    assert json.loads(done.output) == json.loads(out.read_text()) == expected
    assert run("signers", "--chain-id", "1", "--threshold", "3", "--signer", KEYS[0].address).exit_code == 1
    assert run("signers", "--chain-id", "1").exit_code == 2  # usage: incomplete
    assert run("signers").exit_code == 2  # usage: neither mode


def test_parse_headers_forms() -> None:
    """Line form: comments, blanks, colons in values; names folded to lower case."""
    assert parse_headers("# x\n\nA-B: c:d \nwebhook-id: e\n") == {"a-b": "c:d", "webhook-id": "e"}
    assert parse_headers(' {"X": "1"}') == {"x": "1"}
    with pytest.raises(ValueError, match="line 1"):
        parse_headers(" indented: no\n")


def test_console_script_exit_codes(files: Dict[str, Path], tmp_path: Path) -> None:
    """The installed command, as a merchant runs it: 0 with the id, 1 with the reason on stderr."""
    script = Path(sys.executable).with_name("settleproof")
    args = [str(script), "verify", "--signers", str(files["signers.json"]), str(files["body.json"])]
    ok = subprocess.run(args + [str(files["headers.txt"])], cwd=tmp_path, capture_output=True, text=True,  # nosec
                        timeout=120, check=False)
    assert (ok.returncode, ok.stdout) == (0, EVENT.id + "\n"), ok.stderr
    files["headers.json"].write_text(json.dumps({**json.loads(files["headers.json"].read_text()),
                                                 "settleproof-signatures": ""}))
    bad = subprocess.run(args + [str(files["headers.json"])], cwd=tmp_path, capture_output=True, text=True,  # nosec
                         timeout=120, check=False)
    assert bad.returncode == 1 and "is empty" in bad.stderr and bad.stdout == ""
