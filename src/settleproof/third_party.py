"""Put the framework's third-party AEA packages under packages/ and verify their IPFS hashes.

`autonomy packages sync` would fetch them from IPFS, which is unreachable here, so we take
the very same files from PyPI wheels instead:

* the open-autonomy distribution (already installed) ships packages/valory/{skills,
  connections,protocols,contracts}/... for the ABCI framework;
* the open-aea packages (ledger/http connections, http/ledger_api/... protocols,
  open_aea/signing) ship in no installable wheel of ours, so we read them out of the
  mech-server wheel, which is downloaded with `pip download --no-deps` and never installed.

packages/packages.json "third_party" is the source of truth for *what* we need and *which*
hash each package must have; SOURCES below only says where to copy each one from. The hash
is computed exactly as `autonomy packages lock` / `autonomy hash one` do
(aea.helpers.ipfs.base.IPFSHashOnly.get, which skips __pycache__ dirs and *.pyc files).
"""

import hashlib
import json
import shutil
import subprocess  # nosec
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import yaml
from aea.helpers.ipfs.base import IPFSHashOnly

OPEN_AUTONOMY = "open-autonomy"
MECH_SERVER = "mech-server"

MECH_SERVER_VERSION = "0.8.6"
MECH_SERVER_WHEEL = f"mech_server-{MECH_SERVER_VERSION}-py3-none-any.whl"
MECH_SERVER_WHEEL_SHA256 = (
    "21ffadb51b3cbc6ed8336ba94e9b6742ad93eff91197800610788b9181c609be"
)
WHEEL_CACHE = Path(".cache/wheels")

# Where each third-party package is copied from. The set must cover packages.json
# "third_party", which is the dependency closure of our agent: skills abstract_abci,
# abstract_round_abci, registration_abci, reset_pause_abci; connections abci, http_client,
# http_server, ipfs, ledger, p2p_libp2p_client; plus everything those depend on.
SOURCES: Dict[str, str] = {
    "protocol/open_aea/signing/1.0.0": MECH_SERVER,
    "protocol/valory/abci/0.1.0": OPEN_AUTONOMY,
    "protocol/valory/acn/1.1.0": MECH_SERVER,
    "protocol/valory/contract_api/1.0.0": MECH_SERVER,
    "protocol/valory/http/1.0.0": MECH_SERVER,
    "protocol/valory/ipfs/0.1.0": OPEN_AUTONOMY,
    "protocol/valory/ledger_api/1.0.0": MECH_SERVER,
    "protocol/valory/tendermint/0.1.0": OPEN_AUTONOMY,
    "contract/valory/service_registry/0.1.0": OPEN_AUTONOMY,
    "connection/valory/abci/0.1.0": OPEN_AUTONOMY,
    "connection/valory/http_client/0.23.0": MECH_SERVER,
    "connection/valory/http_server/0.22.0": MECH_SERVER,
    "connection/valory/ipfs/0.1.0": OPEN_AUTONOMY,
    "connection/valory/ledger/0.19.0": MECH_SERVER,
    "connection/valory/p2p_libp2p_client/0.1.0": MECH_SERVER,
    "skill/valory/abstract_abci/0.1.0": OPEN_AUTONOMY,
    "skill/valory/abstract_round_abci/0.1.0": OPEN_AUTONOMY,
    "skill/valory/registration_abci/0.1.0": OPEN_AUTONOMY,
    "skill/valory/reset_pause_abci/0.1.0": OPEN_AUTONOMY,
}

# Authors whose package trees this module owns (both git-ignored).
THIRD_PARTY_AUTHORS = ("valory", "open_aea")

CONFIG_FILES = {
    "protocol": "protocol.yaml",
    "contract": "contract.yaml",
    "connection": "connection.yaml",
    "skill": "skill.yaml",
    "agent": "aea-config.yaml",
    "service": "service.yaml",
}
DEPENDENCY_TYPES = ("protocol", "contract", "connection", "skill")


class ThirdPartyError(Exception):
    """A third-party package is missing, unknown or does not have the pinned hash."""


@dataclass(frozen=True)
class PackageKey:
    """A packages.json key such as skill/valory/abstract_round_abci/0.1.0."""

    type: str
    author: str
    name: str
    version: str

    @classmethod
    def parse(cls, key: str) -> "PackageKey":
        """Parse a packages.json key."""
        parts = key.split("/")
        if len(parts) != 4 or parts[0] not in CONFIG_FILES:
            raise ThirdPartyError(f"packages.json: malformed package key {key!r}")
        return cls(*parts)

    def __str__(self) -> str:
        """Render back to the packages.json key."""
        return f"{self.type}/{self.author}/{self.name}/{self.version}"

    @property
    def relpath(self) -> Path:
        """Location under packages/, as the framework lays it out (no version in the path)."""
        return Path(self.author, f"{self.type}s", self.name)


def ipfs_hash(path: Path) -> str:
    """Hash a package directory the way `autonomy packages lock` does."""
    return IPFSHashOnly.get(str(path))


def load_packages_json(packages_dir: Path) -> Tuple[Dict[str, str], Dict[str, str]]:
    """Return the (dev, third_party) sections of packages/packages.json."""
    path = packages_dir / "packages.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return dict(data["dev"]), dict(data["third_party"])
    except (OSError, ValueError, KeyError) as e:
        raise ThirdPartyError(f"{path}: cannot read dev/third_party sections: {e}") from e


def _copy_ignore(_dir: str, names: List[str]) -> List[str]:
    """Skip byte-code: it is not part of a package (and the hash ignores it anyway)."""
    return [n for n in names if n == "__pycache__" or n.endswith(".pyc")]


class _Sources:
    """Lazily located source trees: the installed open-autonomy and the mech-server wheel."""

    def __init__(self, root: Path, log: Callable[[str], None]) -> None:
        """Remember where the wheel cache is; nothing is downloaded until needed."""
        self.root = root
        self.log = log
        self._wheel: Optional[zipfile.ZipFile] = None

    def describe(self, source: str) -> str:
        """Human name of a source, with its version, for error messages."""
        if source == OPEN_AUTONOMY:
            return f"open-autonomy {metadata.version('open-autonomy')}"
        return f"{MECH_SERVER}=={MECH_SERVER_VERSION} wheel"

    def materialise(self, source: str, key: PackageKey, dest: Path) -> None:
        """Write the package's files into the (not yet existing) directory dest."""
        if source == OPEN_AUTONOMY:
            dist = metadata.distribution("open-autonomy")
            src = Path(str(dist.locate_file(Path("packages") / key.relpath)))
            if not src.is_dir():
                raise ThirdPartyError(
                    f"third-party package {key}: not found in the installed open-autonomy ({src})"
                )
            shutil.copytree(src, dest, ignore=_copy_ignore)
            return
        wheel = self._mech_server_wheel()
        prefix = f"packages/{key.relpath.as_posix()}/"
        members = [
            m for m in wheel.namelist()
            if m.startswith(prefix) and not m.endswith("/")
            and "__pycache__/" not in m and not m.endswith(".pyc")
        ]
        if not members:
            raise ThirdPartyError(f"third-party package {key}: not found in {MECH_SERVER_WHEEL}")
        for member in members:
            target = dest / member[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(wheel.read(member))

    def _mech_server_wheel(self) -> zipfile.ZipFile:
        """Open the cached mech-server wheel, downloading it (no deps, not installed) if needed."""
        if self._wheel is not None:
            return self._wheel
        cache = self.root / WHEEL_CACHE
        path = cache / MECH_SERVER_WHEEL
        if not path.is_file():
            self.log(f"downloading {MECH_SERVER}=={MECH_SERVER_VERSION} wheel into {cache}")
            cache.mkdir(parents=True, exist_ok=True)
            cmd = [
                sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", "--no-input", "--quiet",
                "--dest", str(cache), f"{MECH_SERVER}=={MECH_SERVER_VERSION}",
            ]
            result = subprocess.run(cmd, check=False, capture_output=True, text=True)  # nosec
            if result.returncode != 0 or not path.is_file():
                tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
                raise ThirdPartyError(f"pip download {MECH_SERVER}=={MECH_SERVER_VERSION} failed: {tail[0]}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != MECH_SERVER_WHEEL_SHA256:
            raise ThirdPartyError(
                f"{path}: sha256 {digest} is not the pinned {MECH_SERVER_WHEEL_SHA256}; delete it and re-run"
            )
        self._wheel = zipfile.ZipFile(path)
        return self._wheel


def _ensure_init_files(packages_dir: Path, key: PackageKey) -> None:
    """Author and type dirs must be Python packages for `import packages.valory...` to work."""
    for rel in (Path(key.author), Path(key.author, f"{key.type}s")):
        init = packages_dir / rel / "__init__.py"
        if not init.exists():
            init.parent.mkdir(parents=True, exist_ok=True)
            init.touch()


def _install(
    packages_dir: Path, key: PackageKey, expected: str, source: str, sources: _Sources
) -> None:
    """Materialise one package next to its final place, check its hash, then move it in."""
    dest = packages_dir / key.relpath
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{key.name}.", dir=dest.parent) as tmp:
        staged = Path(tmp) / key.name  # same basename: the wrapped hash includes it
        sources.materialise(source, key, staged)
        actual = ipfs_hash(staged)
        if actual != expected:
            raise ThirdPartyError(
                f"third-party package {key} from {sources.describe(source)}: "
                f"hash {actual} does not match packages.json {expected}"
            )
        if dest.exists():
            shutil.rmtree(dest)
        staged.rename(dest)


def _check_dependencies(packages_dir: Path, key: PackageKey, known: Dict[str, str]) -> None:
    """Every dependency a third-party package pins must be in packages.json with that hash.

    This is the check `autonomy packages lock --check` does; failing here names the gap early.
    """
    config = packages_dir / key.relpath / CONFIG_FILES[key.type]
    with config.open(encoding="utf-8") as fp:
        data = next(yaml.safe_load_all(fp))
    for dep_type in DEPENDENCY_TYPES:
        for dep in data.get(f"{dep_type}s") or []:
            public_id, _, dep_hash = dep.rpartition(":")
            author_name, _, version = public_id.partition(":")
            dep_key = f"{dep_type}/{author_name}/{version}"
            if dep_key not in known:
                raise ThirdPartyError(
                    f"third-party package {key} depends on {dep_key}, which packages.json does not list"
                )
            if known[dep_key] != dep_hash:
                raise ThirdPartyError(
                    f"third-party package {key} pins {dep_key} at {dep_hash} "
                    f"but packages.json has {known[dep_key]}"
                )


def _unlisted(packages_dir: Path, listed: List[PackageKey]) -> List[Path]:
    """Package dirs under our third-party authors that packages.json does not list."""
    wanted = {packages_dir / k.relpath for k in listed}
    found = []
    for author in THIRD_PARTY_AUTHORS:
        for type_dir in sorted(d for d in (packages_dir / author).glob("*s") if d.is_dir()):
            for pkg in sorted(type_dir.iterdir()):
                if pkg.is_dir() and not pkg.name.startswith((".", "_")) and pkg not in wanted:
                    found.append(pkg)
    return found


def sync(root: Path, force: bool = False, log: Callable[[str], None] = print) -> List[str]:
    """Make packages/ hold exactly the pinned third-party packages; return the keys (re)installed.

    Idempotent: a package already in place with the right hash is left untouched (only hashed).
    A package in place with a wrong hash is an error, unless force=True, which replaces it.
    """
    packages_dir = root / "packages"
    dev, third_party = load_packages_json(packages_dir)
    keys = [PackageKey.parse(k) for k in third_party]
    unknown = [str(k) for k in keys if str(k) not in SOURCES]
    if unknown:
        raise ThirdPartyError(
            f"no source known for third-party package(s) {', '.join(unknown)}: "
            "add them to settleproof.third_party.SOURCES"
        )

    sources = _Sources(root, log)
    installed = []
    for key in keys:
        expected = third_party[str(key)]
        dest = packages_dir / key.relpath
        _ensure_init_files(packages_dir, key)
        if dest.exists():
            actual = ipfs_hash(dest)
            if actual == expected:
                continue
            if not force:
                raise ThirdPartyError(
                    f"third-party package {key}: hash {actual} does not match packages.json {expected} "
                    f"(local edits under {dest.relative_to(root)}? "
                    "`settleproof packages sync --force` restores it)"
                )
        log(f"installing {key} from {sources.describe(SOURCES[str(key)])}")
        _install(packages_dir, key, expected, SOURCES[str(key)], sources)
        installed.append(str(key))

    known = {**third_party, **dev}
    for key in keys:
        _check_dependencies(packages_dir, key, known)
    for extra in _unlisted(packages_dir, keys):
        log(
            f"warning: {extra.relative_to(root)} is not listed in packages.json third_party; "
            "`autonomy packages lock --check` will reject it"
        )
    return installed
