import os

import pytest
import torch

# Two cores: keep torch from oversubscribing when tests run beside other work.
torch.set_num_threads(min(2, os.cpu_count() or 1))
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
