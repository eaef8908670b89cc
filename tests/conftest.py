import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
NUAA = Path(os.environ.get("IRSTD_NUAA", REPO.parent / "shared" / "datasets" / "NUAA-SIRST"))

# Variables a launcher or an outer distributed job may have left in the environment; a child
# torchrun must not inherit them (a stale MASTER_PORT or RANK would redirect its rendezvous).
_DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
             "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(scope="session")
def nuaa_root() -> Path:
    """The real NUAA-SIRST dataset beside the repository; tests using it skip when it is absent."""
    if not (NUAA / "images").is_dir():
        pytest.skip(f"NUAA-SIRST not found at {NUAA}")
    return NUAA


def distributed_env() -> dict[str, str]:
    """Environment for processes of a local gloo group: one thread each, unbuffered output, no
    inherited rank variables, and gloo bound to the loopback interface (so nothing depends on
    what the host name resolves to)."""
    env = {k: v for k, v in os.environ.items() if k not in _DIST_ENV and not k.startswith("TORCHELASTIC_")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if sys.platform.startswith("linux") and Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"
    return env


def run_torchrun(args, nproc: int = 2, timeout: float = 600.0) -> subprocess.CompletedProcess:
    """Run ``python -m torch.distributed.run`` with ``nproc`` local processes and ``args`` (a
    script path or ``-m module ...``); returns the finished process (text stdout and stderr).

    The rendezvous store is a c10d TCPStore the launcher itself binds on 127.0.0.1 port 0, so the
    kernel picks a free port and holds it: no port is chosen first and bound later (a race with
    any other test or job on the machine), and workers reach it as 127.0.0.1 rather than through
    the host name. The timeout is generous because the suite may share its cores with other
    work; on expiry the launcher's whole process group (workers included) is killed and the test
    fails with everything printed so far.
    """
    cmd = [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes=1", f"--nproc-per-node={nproc}", "--max-restarts=0",
        "--rdzv-backend=c10d", "--rdzv-endpoint=127.0.0.1:0", f"--rdzv-id={uuid.uuid4()}",
        "--local-addr=127.0.0.1",
        *map(str, args),
    ]
    proc = subprocess.Popen(cmd, env=distributed_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout:.0f} s\n--- stdout ---\n{out[-3000:]}\n"
                    f"--- stderr ---\n{err[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture
def torchrun():
    """:func:`run_torchrun`, for tests that start a local multi-process gloo group."""
    return run_torchrun


@pytest.fixture
def one_thread():
    """Torch on one CPU thread: the tests' networks are tiny, and the machine is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
