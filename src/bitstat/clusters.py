"""redis-py's cluster clients (blocking and asyncio), following an ASK redirect to any node, and
every master there is now, for SCAN.

While a slot moves to a master that serves no slot yet (a node just added to the cluster, the
usual target of `--cluster reshard`), the old owner answers ASK with that node's address for
the keys already moved. redis-py looks the address up among the nodes it learned from CLUSTER
SLOTS, where a master without slots is not listed, and fails with an AttributeError (redis-py
issue #4015). These clients add such a node when asked for it by name, as redis-py itself adds
a node first met in a MOVED redirect; the next refresh of the slot map replaces the list.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio.cluster as aio_cluster
from redis.cluster import PRIMARY, ClusterNode, RedisCluster

UNWELL = frozenset({"fail", "noaddr", "handshake"})  # CLUSTER NODES flags of a master to skip


def address(node_name: str) -> tuple[str, int]:
    """(host, port) of a redis-py node name, "host:port"."""
    host, _, port = node_name.rpartition(":")
    return host, int(port)


class Cluster(RedisCluster):
    def get_node(
        self, host: str | None = None, port: int | None = None, node_name: str | None = None
    ) -> Any:
        node = super().get_node(host, port, node_name)  # type: ignore[no-untyped-call]
        if node is None and node_name:  # the target of an ASK redirect
            node = ClusterNode(*address(node_name), PRIMARY)  # type: ignore[no-untyped-call]
            self.nodes_manager.nodes_cache.setdefault(node.name, node)
            node = self.nodes_manager.nodes_cache[node.name]
        return node


class AsyncCluster(aio_cluster.RedisCluster):
    def get_node(
        self, host: str | None = None, port: int | None = None, node_name: str | None = None
    ) -> Any:
        node = super().get_node(host, port, node_name)
        if node is None and node_name:  # the target of an ASK redirect
            manager = self.nodes_manager
            node = aio_cluster.ClusterNode(
                *address(node_name), PRIMARY, **manager.connection_kwargs
            )
            manager.set_nodes(manager.nodes_cache, {node.name: node})
        return node


def on_every_connection(client: AsyncCluster, redis_connect_func: Any) -> None:
    """Give `redis_connect_func` to the connections of an asyncio cluster client's nodes, the
    nodes it finds later too (the blocking cluster client takes it as an argument; this one
    does not)."""
    manager = client.nodes_manager
    for node in manager.startup_nodes.values():
        node.connection_kwargs["redis_connect_func"] = redis_connect_func
    for kwargs in (manager.connection_kwargs, client.connection_kwargs):
        kwargs["redis_connect_func"] = redis_connect_func


def masters_listed(nodes: dict[str, dict[str, Any]]) -> list[str]:
    """The names of the masters a (parsed) CLUSTER NODES reply lists, failed ones aside; one
    that serves no slot yet among them (a master just added, the target of a slot moving)."""
    out = []
    for name, node in nodes.items():
        flags = set(node["flags"].split(","))
        if "master" in flags and not flags & UNWELL:
            out.append(name)
    return out


def every_master(client: Cluster) -> list[Any]:
    """Every master of the cluster now, each asked in turn by SCAN: the slot map read again and
    the masters listed by a node, not those the client learnt at connect (slots may have moved
    to a master added since, which the client never met)."""
    client.nodes_manager.initialize()  # type: ignore[no-untyped-call]
    listed: dict[str, dict[str, Any]] = client.cluster_nodes()  # type: ignore[assignment]
    return [client.get_node(node_name=n) for n in masters_listed(listed)]


async def every_master_async(client: AsyncCluster) -> list[Any]:
    """`every_master` on asyncio."""
    await client.nodes_manager.initialize()
    return [client.get_node(node_name=n) for n in masters_listed(await client.cluster_nodes())]
