"""A private Docker engine for the image tests, and a stand-in base image when none can be pulled.

Reusable outside pytest::

    python -m tests.deploy.engine DIR   # start an engine under DIR, make the base, wait (Ctrl-C)

``Engine.start(folder)`` runs Debian's ``dockerd`` (package ``docker.io``, installed
by ``scripts/ensure-debian`` when missing) with everything under ``folder``:
``--data-root``, ``--exec-root``, its pid file and its socket (``-H unix://``), vfs
storage, no iptables and no bridge, so it touches no other engine on the machine and
needs no kernel module. Containers use ``--network host``. ``Engine.stop()`` signals
that daemon by its own PID, never by name.

``ensure_base(engine, name)`` makes ``name`` (the Dockerfile's ``PYTHON_IMAGE``)
available: already there, pulled, or, when the registry cannot be reached (Docker Hub
is not reachable from these machines), a stand-in made here: ``debootstrap
--variant=minbase`` of Debian bookworm with python3, python3-venv,
python-is-python3 and the Python headers (Python 3.11 and its headers, as
python:3.11-slim), ``docker import``ed under that
name. What it did is returned as a sentence, for the test's output.

Builds use the Debian package's own ``docker`` client (``/usr/bin/docker``): its
built-in BuildKit needs no buildx plugin and gives the build the secret ``ca`` (the
machine's CA bundle, for pip where TLS is intercepted) and ``--network host``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CA_BUNDLE", "Engine", "EngineUnavailable", "ensure_base"]

ROOT = Path(__file__).resolve().parent.parent.parent
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
_MIRROR = os.environ.get("GATE_DEBOOTSTRAP_MIRROR", "http://deb.debian.org/debian")
# libpython3.11-dev: the headers python:3.11-slim ships too (the build stage compiles with mypyc)
_STAND_IN_PACKAGES = "python3,python3-venv,python-is-python3,libpython3.11-dev"
_TRIMMED = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
            "usr/share/locale")  # fmt: skip


class EngineUnavailable(Exception):
    """No engine can be started here; the message says why (the tests skip with it)."""


@dataclass
class Engine:
    """One dockerd under a folder of its own, and the client that talks to it."""

    folder: Path
    client: str
    process: subprocess.Popen[bytes] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.folder / "docker.sock"

    @property
    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("GATE_", "DOCKER_"))}
        return keep | {"DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "1"}

    @classmethod
    def start(cls, folder: Path, bound_s: float = 60.0) -> Engine:
        """Start dockerd under ``folder``; raise EngineUnavailable with the reason if it cannot."""
        if os.geteuid() != 0:
            raise EngineUnavailable("dockerd needs root here (rootless engines are not set up)")
        if shutil.which("dockerd") is None:
            subprocess.run([str(ROOT / "scripts" / "ensure-debian"), "docker.io"], check=False,
                           timeout=600)  # fmt: skip
        dockerd = shutil.which("dockerd")
        client = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else shutil.which("docker")
        if dockerd is None or client is None:
            raise EngineUnavailable("no dockerd/docker (Debian package docker.io) installed")
        folder.mkdir(parents=True, exist_ok=True)
        engine = cls(folder, client)
        started = time.monotonic()
        log = (folder / "dockerd.log").open("wb")
        engine.process = subprocess.Popen(
            [dockerd, "--storage-driver=vfs", "--iptables=false", "--ip6tables=false",
             "--bridge=none", f"--data-root={folder / 'data'}", f"--exec-root={folder / 'exec'}",
             f"--pidfile={folder / 'dockerd.pid'}", f"-H=unix://{engine.socket}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + bound_s
        while time.monotonic() < deadline:
            if engine.process.poll() is not None:
                break
            if engine.socket.exists() and engine.docker("info", timeout=20).returncode == 0:
                engine.timings["engine start"] = time.monotonic() - started
                return engine
            time.sleep(0.2)
        tail = (folder / "dockerd.log").read_text(errors="replace")[-1500:]
        engine.stop()
        raise EngineUnavailable(f"dockerd did not come up within {bound_s:.0f}s: {tail}")

    def docker(
        self, *args: str, timeout: float = 120, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the client against this engine (bounded), output captured as text."""
        if stdin is not None:
            done = subprocess.run([self.client, *args], env=self.env, input=stdin,
                                  capture_output=True, timeout=timeout, check=False)  # fmt: skip
            return subprocess.CompletedProcess(
                done.args, done.returncode, done.stdout.decode(errors="replace"),
                done.stderr.decode(errors="replace"),
            )  # fmt: skip
        return subprocess.run([self.client, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)  # fmt: skip

    def stop(self) -> None:
        """SIGTERM the daemon by its PID (its containers stop with it); SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            self._unmount()
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self._unmount()

    def _unmount(self) -> None:
        """Lift what dockerd left mounted under its own folder (its netns), deepest first."""
        mounts = Path("/proc/mounts").read_text().splitlines()
        ours = [line.split()[1] for line in mounts if line.split()[1].startswith(f"{self.folder}/")]
        for point in sorted(ours, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=30, check=False)


def ensure_base(engine: Engine, name: str) -> str:
    """Make image ``name`` available to ``engine``; a sentence saying how."""
    if engine.docker("image", "inspect", name).returncode == 0:
        return f"{name}: already in the engine"
    started = time.monotonic()
    pulled = engine.docker("pull", name, timeout=300)
    if pulled.returncode == 0:
        engine.timings["base pull"] = time.monotonic() - started
        return f"{name}: pulled"
    why = (pulled.stderr.strip().splitlines() or ["no answer"])[-1]
    if shutil.which("debootstrap") is None:
        subprocess.run([str(ROOT / "scripts" / "ensure-debian"), "debootstrap"], check=False,
                       timeout=600)  # fmt: skip
    if shutil.which("debootstrap") is None:
        raise EngineUnavailable(f"{name} cannot be pulled ({why}) and debootstrap is missing")
    started = time.monotonic()
    rootfs = engine.folder / "stand-in"
    made = subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={_STAND_IN_PACKAGES}", "bookworm",
         str(rootfs), _MIRROR],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if made.returncode != 0:
        raise EngineUnavailable(f"{name} cannot be pulled ({why}); debootstrap: {made.stderr}")
    for trimmed in _TRIMMED:
        shutil.rmtree(rootfs / trimmed, ignore_errors=True)
    archive = engine.folder / "stand-in.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
    shutil.rmtree(rootfs, ignore_errors=True)
    imported = engine.docker("import", str(archive), name, timeout=300)
    archive.unlink()
    if imported.returncode != 0:
        raise EngineUnavailable(f"docker import of the stand-in failed: {imported.stderr}")
    engine.timings["stand-in base (debootstrap + import)"] = time.monotonic() - started
    return (
        f"{name} cannot be pulled ({why}): made a stand-in with debootstrap --variant=minbase "
        f"bookworm + {_STAND_IN_PACKAGES} (Python 3.11) and docker import'ed it as {name}"
    )


def _main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where the engine keeps everything")
    parser.add_argument("--base", default="python:3.11-slim", help="the base image to ensure")
    args = parser.parse_args()
    try:
        engine = Engine.start(args.folder.resolve())
    except EngineUnavailable as error:
        print(f"no engine: {error}", file=sys.stderr)
        return 1
    try:
        print(ensure_base(engine, args.base))
        print(f"engine up: export DOCKER_HOST=unix://{engine.socket}  (Ctrl-C stops it)")
        with contextlib.suppress(KeyboardInterrupt):
            engine.process.wait() if engine.process else None
    except EngineUnavailable as error:
        print(f"no base: {error}", file=sys.stderr)
        return 1
    finally:
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
