"""Two agents never share a side's state: the second waits for the lock, then says who
holds it (``SessionBusy``, exit 6) instead of using the state beside the first."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from yeet.contract.values import EndpointConfig
from yeet.model.errors import SessionBusy
from yeet.remote.agent.endpoint import AgentEndpoint
from yeet.state.sessions import lock_holder


def test_a_second_agent_waits_then_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    config = EndpointConfig("s", "beta", str(root), digest="blake2b")
    state = tmp_path / "state"

    async def main() -> None:
        first = AgentEndpoint(state)
        await first.open(config)
        assert lock_holder(state) is not None  # the holder's pid is in the lock file
        second = AgentEndpoint(state, lock_wait=0.5)
        started = time.monotonic()
        with pytest.raises(SessionBusy, match="another yeet agent is using"):
            await second.open(config)
        assert time.monotonic() - started >= 0.45  # it waited for the lock first
        await first.close()
        assert lock_holder(state) is None
        await second.open(config)  # free now
        await second.close()

    asyncio.run(main())
