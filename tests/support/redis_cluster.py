"""A private Redis Cluster for tests: ``masters`` masters (+ ``replicas`` each) on free
ports of loopback, created with ``redis-cli --cluster create``, in temp dirs.

:meth:`RedisClusterRig.migrate_slot` moves one slot to another master (the
SETSLOT IMPORTING / MIGRATING / MIGRATE / SETSLOT NODE sequence ``redis-cli --cluster
reshard`` runs); :meth:`RedisClusterRig.kill_subscribers` cuts a node's sharded subscribers;
:meth:`RedisClusterRig.kill_master` SIGKILLs a master and
:meth:`RedisClusterRig.wait_owner_changed` waits for its replica to be promoted.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any

import redis
from redis.crc import key_slot

from quart_app.devserver import redis_server_binary
from tests.support.services import RedisServer, ask_redis, free_port


def cluster_support() -> str | None:
    """Why a cluster cannot be started here (None when it can): redis-cli missing or a
    redis-server older than 7 (no sharded pub/sub)."""
    if shutil.which("redis-cli") is None:
        return "redis-cli is not installed"
    out = subprocess.run(
        [redis_server_binary(), "--version"], capture_output=True, text=True, check=False
    ).stdout
    version = out.split("v=", 1)[1].split()[0] if "v=" in out else "0"
    if int(version.split(".")[0]) < 7:
        return f"redis-server {version} has no sharded pub/sub (7+ needed)"
    return None


class RedisClusterRig:
    def __init__(self, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 1000) -> None:
        self.masters = masters
        self.replicas = replicas
        self.servers: list[RedisServer] = []
        self.bus_ports: list[int] = []
        for _ in range(masters * (1 + replicas)):
            server = RedisServer()
            self.bus_ports.append(free_port())
            server.args = (
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"{server.dir}/nodes.conf",
                "--cluster-node-timeout",
                str(node_timeout_ms),
                # the bus port would be port + 10000 (refused above 55535): pick a free one
                "--cluster-port",
                str(self.bus_ports[-1]),
                # a replica that never finished its first sync is not allowed to fail over
                "--repl-diskless-sync-delay",
                "0",
            )
            self.servers.append(server)

    @property
    def nodes(self) -> str:
        """``host:port,...`` of every node (FANOUT_REDIS_CLUSTER)."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)

    def ask(self, port: int, *args: Any) -> Any:
        """One command to the node on ``port``; None when it does not answer."""
        return ask_redis(port, *args)

    def alive_ports(self) -> list[int]:
        return [s.port for s in self.servers if s.proc is not None and s.proc.poll() is None]

    def start(self, timeout: float = 30.0) -> RedisClusterRig:
        """Start and create the cluster; returns once every node reports it ``ok`` with
        the same slot owners.  Raises TimeoutError (everything stopped)."""
        try:
            for server in self.servers:
                server.start()
            if self.masters < 3:
                self._assign_by_hand()
            else:
                self._create()
            self.wait_settled(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _assign_by_hand(self) -> None:
        """Fewer than 3 masters (``redis-cli --cluster create`` refuses): each master
        gets an equal range of slots, the nodes meet, replicas follow in order."""
        masters = self.servers[: self.masters]
        step = -(-16384 // self.masters)
        for i, server in enumerate(masters):
            end = min(16383, (i + 1) * step - 1)
            assert self.ask(server.port, "CLUSTER", "ADDSLOTSRANGE", i * step, end)
        for server in self.servers[1:]:
            first = self.servers[0].port
            assert self.ask(server.port, "CLUSTER", "MEET", "127.0.0.1", first, self.bus_ports[0])
        for i, server in enumerate(self.servers[self.masters :]):
            master_id = self.node_id(masters[i % self.masters].port)
            deadline = time.monotonic() + 10
            while not self.ask(server.port, "CLUSTER", "REPLICATE", master_id):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{server.port} cannot replicate {master_id}")
                time.sleep(0.1)

    def _create(self, timeout: float = 30.0) -> None:
        """``redis-cli --cluster create``; raises RuntimeError with its output when it
        refuses (a CalledProcessError alone hid why)."""
        done = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{s.port}" for s in self.servers),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create exited {done.returncode}:\n"
                f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )

    def slot_owners(self, port: int) -> dict[int, int] | None:
        """slot -> master port as the node on ``port`` sees it (None: no answer)."""
        client = self._client(port)
        try:
            reply = client.execute_command("CLUSTER SLOTS")
        except redis.RedisError:
            return None
        finally:
            client.close()
        owners: dict[int, int] = {}
        for entry in reply if isinstance(reply, list) else []:
            start, end, master = entry[0], entry[1], entry[2]
            owners.update(dict.fromkeys(range(int(start), int(end) + 1), int(master[1])))
        return owners

    def wait_settled(self, timeout: float = 30.0) -> dict[int, int]:
        """Block until every live node says ``cluster_state:ok`` and all agree on the
        slot owners; returns them.  Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = self.alive_ports()
            states = [self.ask(p, "CLUSTER", "INFO") for p in ports]
            replication = [self.ask(p, "INFO", "replication") or {} for p in ports]
            synced = all(
                r.get("master_link_status", "up") == "up"
                and r.get("master_sync_in_progress", 0) == 0
                for r in replication
            )
            if synced and all(s is not None and b"cluster_state:ok" in s for s in states):
                views = [self.slot_owners(p) for p in ports]
                if views[0] and len(views[0]) == 16384 and all(v == views[0] for v in views):
                    return views[0]
            time.sleep(0.1)
        raise TimeoutError("the Redis Cluster did not settle")

    def owner(self, channel: str) -> int:
        """The port of the master owning ``channel``'s slot (as the first live node sees it)."""
        slot = int(key_slot(channel.encode()))
        for port in self.alive_ports():
            owners = self.slot_owners(port)
            if owners:
                return owners[slot]
        raise RuntimeError("no cluster node answers")

    def master_ports(self) -> list[int]:
        owners = self.wait_settled()
        return sorted(set(owners.values()))

    def node_id(self, port: int) -> str:
        reply = self.ask(port, "CLUSTER", "MYID")
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    def migrate_slot(self, slot: int, to_port: int) -> int:
        """Move ``slot`` (and its keys) to the master on ``to_port``; returns the port of
        its previous owner.  Every live node is told the new owner."""
        owners = self.wait_settled()
        src = owners[slot]
        if src == to_port:
            raise ValueError(f"slot {slot} is on {to_port} already")
        src_id, dst_id = self.node_id(src), self.node_id(to_port)
        assert self.ask(to_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        assert self.ask(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while keys := self.ask(src, "CLUSTER", "GETKEYSINSLOT", slot, 100):
            self.ask(src, "MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "KEYS", *keys)
        for port in [to_port, src, *(p for p in self.alive_ports() if p not in (src, to_port))]:
            self.ask(port, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        return src

    def kill_subscribers(self, port: int) -> int:
        """CLIENT KILL every connection on the node on ``port`` holding a sharded
        subscription (the node itself keeps running); returns how many."""
        reply = self.ask(port, "CLIENT", "LIST") or b""
        killed = 0
        for line in reply.decode().splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if int(fields.get("ssub", 0)) > 0:
                killed += int(self.ask(port, "CLIENT", "KILL", "ID", fields["id"]) or 0)
        return killed

    def kill_master(self, port: int) -> None:
        """SIGKILL the node on ``port`` (not restarted)."""
        next(s for s in self.servers if s.port == port).stop(kill=True)

    def wait_owner_changed(self, slot: int, old_port: int, timeout: float = 30.0) -> int:
        """Block until the cluster is ok again with ``slot`` owned by a node other than
        ``old_port``; returns its port.  Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                owners = self.wait_settled(max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            if owners[slot] != old_port:
                return owners[slot]
            time.sleep(0.1)
        raise TimeoutError(f"slot {slot} still on {old_port} after {timeout}s")

    def stop(self) -> None:
        for server in self.servers:
            server.stop(kill=True)
        for server in self.servers:
            shutil.rmtree(server.dir, ignore_errors=True)
