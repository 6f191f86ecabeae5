"""Real OpenSSH servers for tests: generated keys, own config, never the machine's.

Each ``SshServer`` is an ``sshd -D -e -f <own config>`` on a free port, with a
generated host key and the test client's key authorised; its sessions get their
own HOME and XDG directories (``SetEnv``), so remote state and the agent cache
land under the test's temporary directory. ``SshWorld`` is the client side: a
HOME with ``.ssh/config``, ``known_hosts`` and a key, so yeet finds them the way
it finds a user's. Nothing under /etc/ssh or ~/.ssh is read or written.

A server may run inside a network namespace (``Netns``) so that it is
reachable only through another host (a jump host), as on real networks.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
REPO = Path(__file__).resolve().parent.parent


def keygen(path: Path, comment: str = "yeet-test") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Netns:
    """A network namespace joined to this one by a veth pair (a test 'host')."""

    name: str
    outer: str  # our address on the link
    inner: str  # the namespace's address

    @classmethod
    def create(cls) -> Netns:
        tag = secrets.token_hex(3)
        n = int(tag, 16) % 250 + 1
        ns = cls(f"yeet-{tag}", f"10.213.{n}.1", f"10.213.{n}.2")
        veth_out, veth_in = f"yo{tag}", f"yi{tag}"

        def run(*a: str) -> None:
            subprocess.run(a, check=True)

        run("ip", "netns", "add", ns.name)
        try:
            run("ip", "link", "add", veth_out, "type", "veth", "peer", "name", veth_in)
            run("ip", "link", "set", veth_in, "netns", ns.name)
            run("ip", "addr", "add", f"{ns.outer}/30", "dev", veth_out)
            run("ip", "link", "set", veth_out, "up")
            ex = ["ip", "netns", "exec", ns.name]
            run(*ex, "ip", "addr", "add", f"{ns.inner}/30", "dev", veth_in)
            run(*ex, "ip", "link", "set", veth_in, "up")
            run(*ex, "ip", "link", "set", "lo", "up")
        except BaseException:
            ns.delete()
            raise
        return ns

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@dataclass
class SshServer:
    base: Path
    host: str
    port: int
    authorized_keys: Path
    netns: Netns | None = None
    proc: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)  # for sessions (SetEnv)
    host_key: Path = field(init=False)
    home: Path = field(init=False)

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.host_key = self.base / "host_ed25519"
        self.home = self.base / "home"
        self.home.mkdir(exist_ok=True)
        if not self.host_key.exists():
            keygen(self.host_key, "host")
        self.write_config()

    @property
    def config(self) -> Path:
        return self.base / "sshd_config"

    @property
    def log(self) -> Path:
        return self.base / "sshd.log"

    def write_config(self) -> None:
        env: dict[str, object] = {
            "HOME": self.home,
            "XDG_CACHE_HOME": self.home / ".cache",
            "XDG_STATE_HOME": self.home / ".local/state",
            **self.extra_env,
        }
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            f"HostKey {self.host_key}",
            "PidFile none",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin yes",
            "AllowTcpForwarding yes",
            "MaxStartups 100:30:200",
            "MaxSessions 50",
            "LogLevel VERBOSE",
            "SetEnv " + " ".join(f"{k}={v}" for k, v in env.items()),
        ]
        self.config.write_text("\n".join(lines) + "\n")

    def known_hosts_line(self) -> str:
        key = (self.host_key.with_suffix(".pub")).read_text().split()
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{name} {key[0]} {key[1]}\n"

    def start(self) -> SshServer:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        cmd = [SSHD, "-D", "-e", "-f", str(self.config)]
        if self.netns is not None:
            cmd = self.netns.prefix() + cmd
        log = open(self.log, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(cmd, stderr=log, stdout=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 10
        while b"Server listening" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {self.log.read_text()}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def sessions(self) -> list[int]:
        """Pids of the sshd children serving connections now."""
        if self.proc is None:
            return []
        out = subprocess.run(
            ["ps", "-o", "pid=,args=", "--ppid", str(self.master_pid())],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return [int(line.split()[0]) for line in out.splitlines() if line.strip()]

    def master_pid(self) -> int:
        assert self.proc is not None
        if self.netns is None:
            return self.proc.pid
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True
        ).stdout.split()
        return int(out[0]) if out else self.proc.pid

    def kill_sessions(self) -> int:
        """Cut every connection (SIGKILL the per-connection sshd processes)."""
        pids = self.sessions()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def new_host_key(self) -> None:
        """Replace the host key (as a reinstalled or impersonated host would)."""
        self.host_key.unlink()
        self.host_key.with_suffix(".pub").unlink()
        keygen(self.host_key, "host-new")


@dataclass
class SshWorld:
    """A client HOME: ``.ssh/config``, ``.ssh/known_hosts``, ``.ssh/id_ed25519``."""

    root: Path
    servers: list[SshServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home = self.root / "client-home"
        self.ssh = self.home / ".ssh"
        self.ssh.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.key = self.ssh / "id_ed25519"
        if not self.key.exists():
            keygen(self.key, "client")
        self.authorized_keys = self.root / "authorized_keys"
        self.authorized_keys.write_text(self.key.with_suffix(".pub").read_text())
        self.known_hosts = self.ssh / "known_hosts"
        self.known_hosts.touch()
        self.config_file = self.ssh / "config"
        self.config_file.write_text("")
        self._global = (
            f"Host *\n  UserKnownHostsFile {self.known_hosts}\n  IdentityFile {self.key}\n"
        )

    def server(
        self,
        name: str,
        host: str = "127.0.0.1",
        netns: Netns | None = None,
        port: int = 0,
        env: dict[str, str] | None = None,
    ) -> SshServer:
        port = port or (22 if netns is not None and host == netns.inner else free_port(host))
        srv = SshServer(
            self.root / f"sshd-{name}", host, port, self.authorized_keys, netns, extra_env=env or {}
        )
        self.servers.append(srv)
        return srv.start()

    def trust(self, srv: SshServer) -> None:
        with open(self.known_hosts, "a") as f:
            f.write(srv.known_hosts_line())

    def alias(self, name: str, srv: SshServer, *, jump: str | None = None, **extra: str) -> None:
        lines = [f"Host {name}", f"  HostName {srv.host}", f"  Port {srv.port}", "  User root"]
        lines += [f"  IdentityFile {self.key}"]
        if jump:
            lines.append(f"  ProxyJump {jump}")
        lines += [f"  {k} {v}" for k, v in extra.items()]
        # Host blocks first, the catch-all last (the first value found wins in ssh_config).
        text = self.config_file.read_text().replace(self._global, "")
        self.config_file.write_text(text + "\n".join(lines) + "\n\n" + self._global)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SSH_", "XDG_"))}
        env.update(
            HOME=str(self.home),
            XDG_STATE_HOME=str(self.root / "client-state"),
            XDG_CACHE_HOME=str(self.root / "client-cache"),
            PYTHONPATH=str(REPO),
        )
        env.update(extra)
        return env

    def stop(self) -> None:
        for srv in self.servers:
            srv.stop()
