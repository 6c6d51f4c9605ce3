"""Every compose role starts at once: parallel first starts on a fresh PostgreSQL database all migrate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRST_START = """
import asyncio, sys
from connectors.sql.engine import applied_versions, create_engine, migrate
from pipeline.settings import Settings

async def main() -> None:
    engine = create_engine(Settings(data_dir=sys.argv[2], store={"sql_url": sys.argv[1]}))
    async with engine.connect():  # connected (and pooled) before the barrier: the race is the DDL's alone
        pass
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # the barrier: now all start at once
    await migrate(engine)
    print(",".join(await applied_versions(engine)))
    await engine.dispose()

asyncio.run(main())
"""


def test_eight_parallel_first_starts_all_succeed(postgres_server, tmp_path: Path) -> None:
    from connectors.sql.engine import load_migrations

    url = postgres_server.new_database("race")
    procs = [subprocess.Popen([sys.executable, "-c", FIRST_START, url, str(tmp_path)], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(8)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.communicate(timeout=60)
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [(*p.communicate(timeout=120), p.returncode) for p in procs]
    failed = [[ln for ln in err.splitlines() if "Error" in ln][-1:] for _out, err, rc in results if rc != 0]
    assert not failed, f"{len(failed)} of 8 first starts failed: {failed}"
    expected = ",".join(m.version for m in load_migrations())
    assert {out.strip() for out, _err, _rc in results} == {expected}
    tables = postgres_server.psql("SELECT count(*) FROM schema_migrations", database=url.rsplit("/", 1)[1])
    assert int(tables) == len(load_migrations())
