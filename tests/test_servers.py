"""The test backends themselves: each answers, and the cluster really spreads keys over 3 nodes."""

from __future__ import annotations

import itertools

import redis.cluster

import servers


def test_backend_answers_ping(redis_client: servers.Client) -> None:
    assert redis_client.ping()


def test_namespace_is_fresh(namespace: str, redis_client: servers.Client) -> None:
    assert namespace.startswith("t-")
    assert redis_client.exists(f"{namespace}:anything") == 0


def key_in_slots(client: redis.cluster.RedisCluster, low: int, high: int) -> str:
    """The first ``key-N`` whose slot lies in ``[low, high)``."""
    return next(
        key for key in (f"key-{n}" for n in itertools.count()) if low <= client.keyslot(key) < high
    )


def test_cluster_serves_every_third_of_the_slots(cluster: servers.Cluster) -> None:
    client = servers.client_for(cluster.url)
    assert isinstance(client, redis.cluster.RedisCluster)
    serving = set()
    try:
        for part in range(3):
            key = key_in_slots(client, servers.SLOTS * part // 3, servers.SLOTS * (part + 1) // 3)
            assert client.set(key, part)
            assert client.get(key) == str(part).encode()
            serving.add(client.get_node_from_key(key).port)
    finally:
        client.close()
    assert serving == set(cluster.ports)
    for index in range(3):
        node = cluster.node(index)
        info = node.execute_command("CLUSTER INFO")
        node.close()
        assert info["cluster_state"] == "ok"
        assert info["cluster_slots_assigned"] == str(servers.SLOTS)
        assert info["cluster_known_nodes"] == "3"
