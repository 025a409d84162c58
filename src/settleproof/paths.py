"""Well-known locations in the SettleProof checkout, so code and tests never hard-code them."""

import os
from pathlib import Path

ANVIL_ENV = "SETTLEPROOF_ANVIL"
# Where `make install` puts the npm package @foundry-rs/anvil-linux-amd64 (see tools/package.json).
ANVIL_RELPATH = Path(".tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")


def _is_repo_root(path: Path) -> bool:
    """A checkout root has our pyproject.toml and the framework's packages/ registry."""
    return (path / "pyproject.toml").is_file() and (path / "packages").is_dir()


def repo_root() -> Path:
    """Return the checkout root.

    The editable install (src layout) puts this file at <root>/src/settleproof/; if the
    package was installed some other way, fall back to searching upwards from the cwd.
    """
    here = Path(__file__).resolve().parents[2]
    if _is_repo_root(here):
        return here
    cwd = Path.cwd().resolve()
    for candidate in (cwd, *cwd.parents):
        if _is_repo_root(candidate):
            return candidate
    raise FileNotFoundError(
        f"cannot find the SettleProof checkout (a dir with pyproject.toml and packages/) "
        f"above {here} or {cwd}"
    )


def anvil_binary() -> Path:
    """Return the anvil executable: $SETTLEPROOF_ANVIL if set, else the copy `make install` put in .tools/."""
    env = os.environ.get(ANVIL_ENV)
    if env:
        path = Path(env)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise FileNotFoundError(f"{ANVIL_ENV}={env} is not an executable file")
        return path
    path = repo_root() / ANVIL_RELPATH
    if not path.is_file():
        raise FileNotFoundError(
            f"anvil not found at {path}: run `make install` (or set {ANVIL_ENV})"
        )
    return path
