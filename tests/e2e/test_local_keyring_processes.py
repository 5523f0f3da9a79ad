"""One local keyring shared by several processes (the region service and the ``konsil
keys`` CLI) that rotate at once: the file lock loses no rotation."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import uuid
from pathlib import Path

from konsil.platform.core.keys.local import LocalKeyring


async def test_concurrent_processes_lose_no_rotation(keyring_dir: Path) -> None:
    keyring = LocalKeyring(keyring_dir)
    org = uuid.uuid4()
    await keyring.create_key(org)
    script = textwrap.dedent(
        f"""
        import asyncio, uuid
        from konsil.platform.core.keys.local import LocalKeyring

        async def main():
            keyring = LocalKeyring({str(keyring_dir)!r})
            for _ in range(20):
                await keyring.rotate(uuid.UUID({str(org)!r}))

        asyncio.run(main())
        """
    )
    workers = [await asyncio.create_subprocess_exec(sys.executable, "-c", script) for _ in range(3)]
    assert await asyncio.wait_for(asyncio.gather(*(w.wait() for w in workers)), 30) == [0, 0, 0]
    assert (await keyring.key_info(org)).latest_version == 61
