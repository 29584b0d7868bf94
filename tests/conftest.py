"""Test-wide settings. Two logical CPU devices stand in for a second device (a GPU) in every TF test.

These must be set before TensorFlow initialises, which happens at the first TF test of the session.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from types import ModuleType

import pytest
from hypothesis import settings

os.environ.setdefault("DEVBENCH_LOGICAL_CPUS", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Same verdict every run: hypothesis explores the same examples each time (a new failing example found by
# exploring would make a passing commit fail later, on nobody's change).
settings.register_profile("devbench", derandomize=True, database=None)
settings.load_profile("devbench")


@pytest.fixture(scope="session")
def tf() -> ModuleType:
    """TensorFlow, configured as devbench configures it (no soft placement, CPU:0 and CPU:1)."""
    from devbench.devices import tensorflow

    return tensorflow()


@pytest.fixture
def async_executor(tf: ModuleType):  # type: ignore[no-untyped-def]
    """Make eager CPU ops return before they finish, as GPU ops do."""
    tf.config.experimental.set_synchronous_execution(False)
    yield
    tf.config.experimental.set_synchronous_execution(True)


@pytest.fixture
def ctrl_c_delivered() -> Iterator[None]:
    """Deliver SIGINT as Ctrl-C whatever started pytest: a background job of a non-interactive shell inherits
    SIGINT ignored, and devbench (like every Unix tool) leaves an ignored signal ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def jax_precision() -> Iterator[ModuleType]:
    """JAX, with its matmul precision restored after the test (it is process-global)."""
    jax = pytest.importorskip("jax")
    before = jax.config.jax_default_matmul_precision
    yield jax
    jax.config.update("jax_default_matmul_precision", before)
