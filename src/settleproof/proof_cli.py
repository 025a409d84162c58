"""`settleproof verify` and `settleproof signers`: the settlement proof from the command line.

`verify` is the merchant's check of one saved request (body and headers files)
against pinned signer documents, through `verify_settlement.py`, the same file
merchants copy; `signers` prints the signer document an operator hands to a
merchant, read from an agent's data folder or built from the chain id, the
threshold and the agents' addresses (by the agent's own `attestation` module).
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import click

# settleproof.verify_settlement is imported in the commands: eth-account takes about a second to
# import, and `settleproof --help` must stay fast.

#: The signer document in an agent's data folder (the local network writes it).
SIGNERS_FILE = "signers.json"


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise click.ClickException(f"cannot read {path}: {error.strerror}") from None


def _json(path: str) -> Any:
    try:
        return json.loads(_read(path))
    except ValueError as error:
        raise click.ClickException(f"{path} is not JSON: {error}") from None


def parse_headers(text: str) -> Dict[str, str]:
    """A saved request's headers: a JSON object of strings, or `Name: value` lines.

    In the line form, blank lines and lines starting with `#` are skipped and a value
    runs to the end of its line (surrounding spaces dropped). A name given twice
    (in any case) is refused: the proof must not depend on which copy is read.
    """
    if text.lstrip().startswith("{"):
        try:
            loaded = json.loads(text)
        except ValueError as error:
            raise ValueError(f"headers: not JSON ({error})") from None
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise ValueError("headers: the JSON form must be an object of strings")
        pairs: List[Tuple[str, str]] = list(loaded.items())
    else:
        pairs = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, colon, value = line.partition(":")
            if not colon or not name.strip() or name != name.strip():
                raise ValueError(f"headers: line {number} is not `Name: value`")
            pairs.append((name, value.strip()))
    headers: Dict[str, str] = {}
    for name, value in pairs:
        if name.lower() in headers:
            raise ValueError(f"headers: {name} given twice")
        headers[name.lower()] = value
    return headers


def _documents(paths: Sequence[str]) -> List[Any]:
    """Every pinned document: each file holds one, or a JSON array of them (a rotation)."""
    documents: List[Any] = []
    for path in paths:
        loaded = _json(path)
        documents.extend(loaded if isinstance(loaded, list) else [loaded])
    return documents


@click.command(name="verify")
@click.option("--signers", "signer_files", multiple=True, required=True,
              help="A pinned signer document (or a JSON array of them); repeat during a rotation.")
@click.argument("body_file")
@click.argument("headers_file")
def verify(signer_files: Tuple[str, ...], body_file: str, headers_file: str) -> None:
    """Check a saved webhook request's settlement proof; print its event id (exit 0) or why not (exit 1)."""
    # pylint: disable-next=import-outside-toplevel
    from settleproof.verify_settlement import SettlementProofError, verify_settlement

    body = _read(body_file)
    try:
        headers = parse_headers(_read(headers_file).decode("utf-8", errors="replace"))
        event = verify_settlement(body, headers, _documents(signer_files))
    except (SettlementProofError, ValueError) as error:
        raise click.ClickException(f"not a settlement: {error}") from None
    click.echo(event["id"])


@click.command(name="signers")
@click.option("--data-dir", envvar="SETTLEPROOF_DATA_DIR",
              help=f"The agent's data folder holding {SIGNERS_FILE} (default $SETTLEPROOF_DATA_DIR).")
@click.option("--chain-id", type=int, help="Build instead: the watched chain's id (eth_chainId).")
@click.option("--threshold", type=int, help="Build instead: the service's consensus threshold.")
@click.option("--signer", "signers", multiple=True, help="Build instead: an agent's address; one per agent.")
@click.option("--output", type=click.Path(dir_okay=False), help="Also write the document to this file.")
def signers(data_dir: Optional[str], chain_id: Optional[int], threshold: Optional[int],
            signers: Tuple[str, ...], output: Optional[str]) -> None:  # pylint: disable=redefined-outer-name
    """Print the signer document a merchant pins (from DATA_DIR/signers.json, or built from the options)."""
    building = chain_id is not None or threshold is not None or bool(signers)
    if building:
        if chain_id is None or threshold is None or not signers:
            raise click.UsageError("building a document needs --chain-id, --threshold and at least one --signer")
        from settleproof.dlq_cli import SKILL, _module  # pylint: disable=import-outside-toplevel

        attestation = _module(f"{SKILL}.attestation")
        try:
            document = attestation.signer_document(chain_id, threshold, list(signers))
        except attestation.AttestationError as error:
            raise click.ClickException(str(error)) from None
    else:
        # pylint: disable-next=import-outside-toplevel
        from settleproof.verify_settlement import SettlementProofError, check_signer_document

        if not data_dir:
            raise click.UsageError("pass --data-dir (or set SETTLEPROOF_DATA_DIR), or build with --chain-id ...")
        path = Path(data_dir) / SIGNERS_FILE
        if not path.is_file():
            raise click.ClickException(f"no signer document at {path}")
        try:
            document = check_signer_document(_json(str(path)))
        except SettlementProofError as error:
            raise click.ClickException(f"{path}: {error}") from None
    text = json.dumps(document, indent=2) + "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
    click.echo(text, nl=False)
