"""Team mode on a real 2-node Ray cluster on loopback (#21 §2): workflow runs as Ray jobs."""

from __future__ import annotations

import json
import urllib.request


def test_the_test_cluster_has_two_live_nodes(ray_cluster):
    with urllib.request.urlopen(f"{ray_cluster.dashboard_url}/nodes?view=summary", timeout=30) as resp:
        summary = json.load(resp)["data"]["summary"]
    alive = {n["raylet"]["nodeId"] for n in summary if n["raylet"]["state"] == "ALIVE"}
    assert alive == set(ray_cluster.node_ids) and len(alive) == 2
