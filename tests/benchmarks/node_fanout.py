"""The Node.js target of the fan-out benchmark: tests/benchmarks/node/server.js (socket.io
4.8 + @socket.io/redis-adapter 8.3, the connection benchmark's baseline) fed by the same
external emitter as the other targets, publishing what ``@socket.io/redis-emitter``
publishes (``--wire node``, :func:`tests.benchmarks.emitter.node_encoder`).

Before each start the emitter's bytes are compared with the real
``@socket.io/redis-emitter``'s for a few sample events (tests/benchmarks/node/wire_check.js):
a Python template standing in for it would otherwise drift unseen.  npm installs it, with
the server's packages, into the connection benchmark's temporary NODE_DIR (never the repo).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from socket_layer.protocol import EVENT_PROGRESS, user_room
from tests.benchmarks.common import ServerProc
from tests.benchmarks.connection_costs import NODE_DIR, NODE_PACKAGES, NodeTarget
from tests.benchmarks.emitter import make_event, node_encoder
from tests.benchmarks.targets import bench_users

#: the emitter whose wire the benchmark's emitter writes (5.1 is the one for redis-adapter 8)
NODE_EMITTER_PACKAGE = "@socket.io/redis-emitter@5.1.0"
WIRE_CHECK = Path(__file__).with_name("node") / "wire_check.js"


def _installed_version(modules: Path, package: str) -> str | None:
    try:
        meta = json.loads((modules / package / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = meta.get("version")
    return version if isinstance(version, str) else None


def ensure_node_emitter() -> Path:
    """``node_modules`` with the server's packages and the pinned redis-emitter.

    All are installed by one npm command: packages installed with ``--no-save`` are
    extraneous to npm, and a later install that does not name them removes them."""
    modules = NODE_DIR / "node_modules"
    name, _, version = NODE_EMITTER_PACKAGE.rpartition("@")
    wanted = [(p.rpartition("@")[0], p.rpartition("@")[2]) for p in NODE_PACKAGES]
    wanted.append((name, version))
    if any(_installed_version(modules, p) != v for p, v in wanted):
        npm = shutil.which("npm")
        if npm is None:
            raise ModuleNotFoundError("npm is not installed: no Node baseline")
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        if not (NODE_DIR / "package.json").exists():
            (NODE_DIR / "package.json").write_text('{"name": "bench-node", "private": true}\n')
        subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--no-save",
                *NODE_PACKAGES,
                NODE_EMITTER_PACKAGE,
            ],
            cwd=NODE_DIR,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return modules


def check_node_wire(modules: Path) -> int:
    """Raise unless :func:`node_encoder` writes, byte for byte, what
    ``@socket.io/redis-emitter`` publishes for the same events; returns the samples
    compared.  The seqs take every integer width the events can have."""
    node = shutil.which("node") or "node"
    encode = node_encoder()
    samples = []
    for (user, job), seq in zip(bench_users(4), (7, 200, 70_000, 5_000_000_000), strict=True):
        event = make_event(job, seq)
        expected = encode(user, job, seq, event["created_at"])  # type: ignore[call-arg]
        samples.append((user_room(user), event, expected))
    out = subprocess.run(
        [node, str(WIRE_CHECK)],
        input=json.dumps(
            [{"room": room, "event": EVENT_PROGRESS, "data": ev} for room, ev, _ in samples]
        ),
        capture_output=True,
        text=True,
        env={"NODE_PATH": str(modules), "PATH": str(Path(node).parent)},
        check=True,
        timeout=60,
    )
    published = json.loads(out.stdout)
    if len(published) != len(samples):
        raise AssertionError(f"redis-emitter published {len(published)} of {len(samples)}")
    for (_, event, (channel, message)), (node_channel, node_hex) in zip(
        samples, published, strict=True
    ):
        ours = message.hex() if isinstance(message, bytes) else message
        if channel != node_channel or ours != node_hex:
            raise AssertionError(
                "the benchmark's Node wire no longer matches @socket.io/redis-emitter's: "
                f"{channel} {ours} != {node_channel} {node_hex} (event {event})"
            )
    return len(samples)


class NodeFanoutTarget(NodeTarget):
    """server.js, fed with ``--wire node`` (checked against redis-emitter at start)."""

    name = "node"
    wire = "node"

    def start(self, count: int = 1, ping_interval: float = 25.0) -> list[ServerProc]:
        check_node_wire(ensure_node_emitter())
        return super().start(count, ping_interval)
