"""Every README command block runs as pasted, in order, in one fresh shell, against `make run` on a
fresh copy of the repository (the tracked files; the venv and built assets linked in, as `make`
would have made them). Blocks that start servers or suites themselves (`make run`, `make test`,
docker) are what this test stands in for; it runs `make run`'s own steps instead."""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from urllib.request import urlopen

import pytest

from tests.benchmarks.server import REPO, free_port

pytestmark = pytest.mark.slow
SERVER_BLOCK = re.compile(r"^\s*(make (run|test)|DATABASE_URL=.*make run|docker )", re.M)


def command_blocks(readme: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", readme, re.S)


def runnable(blocks: list[str]) -> list[str]:
    return [b for b in blocks if not SERVER_BLOCK.search(b)]


def fresh_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    for name in files.decode().split("\0"):
        if name and (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    (dest / ".venv").symlink_to((REPO / ".venv").resolve())
    (dest / "frontend" / "static" / "dist").symlink_to((REPO / "frontend" / "static" / "dist").resolve())
    return dest


def test_every_readme_command_block_runs_as_pasted(tmp_path):
    readme = (REPO / "README.md").read_text()
    blocks = command_blocks(readme)
    todo = runnable(blocks)
    assert len(todo) >= 3 and len(blocks) - len(todo) <= 3, "the README lost its command blocks?"
    repo = fresh_copy(tmp_path / "clone")
    # `make run` in a fresh shell: no services configured, so the embedded default.
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "DJANGO_ENV",
                                                            "CELERY_TASK_ALWAYS_EAGER", "VIRTUAL_ENV")}
    py = str(repo / ".venv" / "bin" / "python")
    for step in (["migrate", "--noinput"], ["demo_setup"]):
        subprocess.run([py, "manage.py", *step], cwd=repo, env=env, check=True, capture_output=True, timeout=300)
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([py, "manage.py", "rundemo", f"127.0.0.1:{port}"], cwd=repo, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.5)
        # One shell, the blocks in order, stopping at the first failing command; only the port differs.
        script = "set -euo pipefail\n" + "\n".join(todo).replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        shell_env = {k: v for k, v in env.items() if not k.startswith(("PYTHON", "DJANGO"))}
        done = subprocess.run(["bash", "-c", script], cwd=repo, env=shell_env, capture_output=True, text=True,
                              timeout=600)
    finally:
        server.terminate()
        server.wait(timeout=30)
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"a README command failed:\n{out[-4000:]}\n--- server:\n{log.read_text()[-2000:]}"
    assert '"organization"' in out  # /me answered with the new key
    assert re.search(r"IBM: \d+ rows read, \d+ stored", out)  # import_csv's report
    assert re.search(r'"count":\s*[1-9]', out), "the rule found no anomaly in the imported history"
    assert "succeeded, 0 anomalies stored" in out  # run_history again: nothing twice
    assert "2008-09-17,0,volume > 500000000" in out  # rules_eval's DolphinDB columns
