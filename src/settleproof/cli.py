"""The `settleproof` command line.

Add a new area as its own click group in its own module and register it at the bottom of
this file with `main.add_command(...)` (e.g. devnet, dlq, status, signers/verify), keeping this file small.
"""

import click

from settleproof import __version__
from settleproof.devnet.cli import devnet
from settleproof.dlq_cli import dlq
from settleproof.proof_cli import signers, verify
from settleproof.status import status


@click.group(name="settleproof")
@click.version_option(__version__, prog_name="settleproof")
def main() -> None:
    """SettleProof developer and operator commands."""


@click.group(name="packages")
def packages() -> None:
    """Manage the framework packages under packages/."""


@packages.command(name="sync")
@click.option(
    "--force",
    is_flag=True,
    help="Replace third-party packages whose hash differs from packages.json.",
)
def packages_sync(force: bool) -> None:
    """Install and hash-check the third-party packages of packages.json."""
    # Local imports keep `settleproof --help` fast (the aea import is slow).
    from settleproof.paths import repo_root  # pylint: disable=import-outside-toplevel
    from settleproof.third_party import ThirdPartyError, sync  # pylint: disable=import-outside-toplevel

    try:
        installed = sync(repo_root(), force=force, log=click.echo)
    except (ThirdPartyError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"third-party packages verified ({len(installed)} newly installed)")


main.add_command(packages)
main.add_command(devnet)
main.add_command(dlq)
main.add_command(status)
main.add_command(signers)
main.add_command(verify)
