"""Shared pytest set-up for tests/, notebooks/ and solutions/: offline hub, nbval comparison policy."""
import os

import pytest

# Tests never touch a model hub: everything they load is built locally or shipped in a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collectstart(collector):
    """nbval: never compare stderr (warnings, progress bars), HTML/JS reprs or widget views.

    Everything else a notebook prints is compared strictly; cells whose text output truly varies
    (timings, versions, device names) carry `# NBVAL_IGNORE_OUTPUT` and are explained in notebook 00.
    """
    if collector.__class__.__name__ == "IPyNbFile":
        collector.skip_compare += (
            "stderr",
            "text/html",
            "application/javascript",
            "application/vnd.jupyter.widget-view+json",
        )


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Unit tests run tiny networks: one thread is as fast as two, and far faster when another job
    shares the CPU (two OpenMP threads then spin-wait on each other)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
