"""Peers: the Kinesis emulators people run locally, kinesalite and kinesis-mock, from npm.

Both come from the npm registry into a cache directory the suite owns
(``cache_dir()``: ``$SHARDLINE_BENCH_CACHE``, else
``$XDG_CACHE_HOME/shardline-bench``, else ``~/.cache/shardline-bench``) at
pinned versions, by ``make bench-emulators`` (``python -m
bench.peers.emulators install``, which runs ``npm install --prefix``), and
run under the machine's ``node``. Neither needs Java: kinesis-mock's npm
package ``kinesis-local`` is its Scala.js build, one ``main.js``. Missing
node, npm or a package raises ``PeerUnavailable`` with the step that installs
it, so the scenario reports a row instead of failing. (npm 11 skips
``leveldown``'s install script unless it is approved; none is needed: the
package ships prebuilt binaries, linux-x64 among them, which
``node-gyp-build`` loads at run time.)

What each stores, and how durably (a row's ``durability`` says the same):

- **kinesalite** (``kinesalite``, Michael Hart's Node implementation on
  LevelUP): by default ``memdown``, every record in the server's memory, gone
  when it stops. With ``--path DIR`` (``durable=True`` here), LevelDB through
  ``leveldown`` in DIR; kinesalite writes its batches without LevelDB's
  ``sync`` option, so an acknowledged record is in LevelDB's log in the OS
  page cache: it survives a crash of the server, not of the machine (no
  fsync, unlike shardline's acknowledgements). Its CLI listens on every
  interface and has no option for the address, so the server is started as
  ``node -e`` with kinesalite's own module (``require('kinesalite')(options)
  .listen(port, '127.0.0.1')``, what ``cli.js`` does but for the address),
  default options otherwise (streams are CREATING for 500 ms).
- **kinesis-mock** (``kinesis-local``, Eric Meisel's Scala implementation,
  its Node build): every record in the server's memory. Its
  ``SHOULD_PERSIST_DATA`` option would write the whole state as JSON every
  ``PERSIST_INTERVAL`` (5 s), a snapshot with no acknowledgement tied to it;
  it is left off, its default. It serves plain HTTP on
  ``KINESIS_MOCK_PLAIN_PORT`` and TLS on ``KINESIS_MOCK_TLS_PORT`` (both free
  ports here; only the plain one is used), with its certificate from
  ``KINESIS_MOCK_CERT_PATH`` (the package's ``server.json``; it looks for it
  in the working directory otherwise). The address is fixed at 0.0.0.0 in
  its code; the load only ever connects to 127.0.0.1. Its log level stays at
  its default (INFO).

Each server runs in a scratch working directory until the ``with`` block
ends, and is stopped with the broker's own SIGTERM-then-SIGKILL reaper
(``server_process``). ``node`` runs the server itself (no ``npx`` or shell
in between), so the server's CPU is read from the process started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from . import HOST, PeerServer, PeerUnavailable, free_port, server_process

#: The npm packages and the versions measured.
PACKAGES = {"kinesalite": "3.3.3", "kinesis-local": "0.6.2"}

NPM_TIMEOUT_S = 600.0

_KINESALITE_SERVER = (
    "var kinesalite = require(process.argv[1]);"
    "var options = process.argv[4] ? {path: process.argv[4]} : {};"
    "kinesalite(options).listen(+process.argv[3], process.argv[2]);"
)


def cache_dir() -> Path:
    """Where the emulators are installed (``node_modules`` below it)."""
    override = os.environ.get("SHARDLINE_BENCH_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "shardline-bench"


def install_hint() -> str:
    """The step that installs the emulators, for an ``unavailable`` row."""
    specs = " ".join(f"{name}@{pinned}" for name, pinned in PACKAGES.items())
    return f"make bench-emulators, i.e. npm install --prefix {cache_dir()} {specs}"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise PeerUnavailable(
            f"node is not installed: sudo apt-get install -y nodejs npm, then {install_hint()}"
        )
    return node


def _package(name: str) -> Path:
    """The installed package's directory, or PeerUnavailable."""
    directory = cache_dir() / "node_modules" / name
    if not (directory / "package.json").is_file():
        raise PeerUnavailable(
            f"the npm package {name} is not installed in {cache_dir()}: {install_hint()}"
        )
    return directory


def version(name: str) -> str:
    """The installed version of the npm package ``name``."""
    manifest = json.loads((_package(name) / "package.json").read_text())
    return str(manifest.get("version", "?"))


def kinesalite_durability(durable: bool) -> str:
    if durable:
        return (
            "LevelDB (--path) in a scratch directory, batches written without sync: "
            "acknowledged once in the OS page cache (survives a server crash, not an OS crash)"
        )
    return "in the server's memory (memdown, the default): lost when the server stops"


def kinesis_mock_durability() -> str:
    return (
        "in the server's memory (SHOULD_PERSIST_DATA off, the default; on, it would "
        "snapshot the whole state as JSON every 5 s): lost when the server stops"
    )


@contextlib.contextmanager
def kinesalite(directory: str, *, durable: bool = False) -> Iterator[PeerServer]:
    """kinesalite on a free loopback port; LevelDB under ``directory`` when ``durable``."""
    node = _node()
    package = _package("kinesalite")
    port = free_port()
    path = os.path.join(directory, "leveldb") if durable else ""
    command = [node, "-e", _KINESALITE_SERVER, str(package), HOST, str(port), path]
    with server_process(command, port, cwd=directory) as server:
        yield server


@contextlib.contextmanager
def kinesis_mock(directory: str) -> Iterator[PeerServer]:
    """kinesis-mock's Node build with plain HTTP on a free port (all interfaces: its code's)."""
    node = _node()
    package = _package("kinesis-local")
    port, tls_port = free_port(), free_port()
    # ``env`` execs node in its place: the process started is the server.
    command = [
        "env",
        f"KINESIS_MOCK_PLAIN_PORT={port}",
        f"KINESIS_MOCK_TLS_PORT={tls_port}",
        f"KINESIS_MOCK_CERT_PATH={package / 'server.json'}",
        node,
        str(package / "main.js"),
    ]
    with server_process(command, port, cwd=directory) as server:
        yield server


def available() -> dict[str, str | None]:
    """Per npm package: None when it can run here, else why not and how to install it."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            _node()
            _package(name)
            out[name] = None
        except PeerUnavailable as missing:
            out[name] = str(missing)
    return out


def install() -> int:
    """``npm install --prefix cache_dir()`` the pinned packages; npm's exit status."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        print("emulators: node and npm are needed: sudo apt-get install -y nodejs npm")
        return 1
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    specs = [f"{name}@{pinned}" for name, pinned in PACKAGES.items()]
    wanted = all(
        (target / "node_modules" / name / "package.json").is_file() and version(name) == pinned
        for name, pinned in PACKAGES.items()
    )
    if wanted:
        print(f"emulators: {', '.join(specs)} are installed in {target}")
        return 0
    command = [npm, "install", "--prefix", str(target), "--no-audit", "--no-fund", *specs]
    print("emulators: " + " ".join(command), flush=True)
    done = subprocess.run(command, timeout=NPM_TIMEOUT_S, check=False)
    return done.returncode


def main(argv: list[str]) -> int:
    if argv == ["install"]:
        return install()
    if argv == ["status"]:
        for name, reason in available().items():
            print(f"{name}: {reason or 'installed, ' + version(name)}")
        return 0
    print("usage: python -m bench.peers.emulators install|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
