"""``jobs.ray_cluster``: the Ray a job runs on."""

from __future__ import annotations

import os

import ray

from jobs.ray_cluster import init_ray


@ray.remote(num_cpus=0)
class _Marker:
    def ping(self) -> bool:
        return True


@ray.remote(num_cpus=0)
def _state_of(actor_id: str) -> str | None:
    # what Ray Train's placement-group cleaner asks, from inside the cluster: the State API
    # with no address
    from ray.util.state import get_actor

    state = get_actor(actor_id, timeout=10)
    return None if state is None else str(state.state)


def test_a_private_ray_asks_its_own_state_api() -> None:
    before = os.environ.get("RAY_API_SERVER_ADDRESS")
    if ray.is_initialized():  # an in-process job of another test left its Ray
        ray.shutdown()
    init_ray("local", num_cpus=1, logging_level="ERROR")
    try:
        # the caller's environment is as it was (`ray job submit` would obey the variable)
        assert os.environ.get("RAY_API_SERVER_ADDRESS") == before
        marker = _Marker.remote()  # type: ignore[attr-defined]
        assert ray.get(marker.ping.remote())
        # Ray alone finds "the latest cluster" from the last `ray start` on the machine (a
        # stopped one, or another live one) or none at all
        assert ray.get(_state_of.remote(marker._actor_id.hex()), timeout=60) == "ALIVE"
    finally:
        ray.shutdown()
