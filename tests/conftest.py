import os

import pytest
import torch

# The tests use tiny models, which gain nothing from a second thread; on a busy 2-core machine OpenMP
# spin-waits make small ops 10-100x slower. Subprocesses inherit the limit through OMP_NUM_THREADS.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def single_thread():
    """Run a test on one torch thread: tiny tensors gain nothing from a second one, and on a shared 2-core
    machine OpenMP spin-waits make small ops 10-100x slower. Use with pytest.mark.usefixtures."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_configure(config):
    # Marks that transformers' common model tests put on some of their tests (tests/test_transformers_common.py)
    for mark in ("accelerate_tests", "flash_attn_test", "flash_attn_3_test", "flash_attn_4_test", "torch_compile_test",
                 "slow"):
        config.addinivalue_line("markers", f"{mark}: a mark of transformers' common model tests")
