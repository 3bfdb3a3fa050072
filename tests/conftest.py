"""Fixtures every test module can use.

- ``checkpoints``: random-weight checkpoints of the real architectures (``tests.checkpoints.
  RandomCheckpoints``), each built on first use and shared by the whole session; deleted at
  the end (SAM ViT-B alone is 375 MB).

The fake pipeline (a ``Remover`` returning real ``Layers`` on known geometry) is
``pipeline.fakes``, so tools can use it too.
"""

from __future__ import annotations

import pytest

from tests.checkpoints import RandomCheckpoints


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    store = RandomCheckpoints(tmp_path_factory.mktemp("random_weights"))
    yield store
    store.cleanup()
