"""Tiny real pipelines of each family, built once per session, and a latents cache their runs share."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    from unlearning.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "sd")


@pytest.fixture(scope="session")
def sd2_base(tmp_path_factory):
    from unlearning.tiny import build_tiny_sd2_pipeline

    return build_tiny_sd2_pipeline(tmp_path_factory.mktemp("tiny-sd2") / "sd2")


@pytest.fixture(scope="session")
def sdxl_base(tmp_path_factory):
    from unlearning.tiny import build_tiny_sdxl_pipeline

    return build_tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny-sdxl") / "sdxl")


@pytest.fixture(scope="session")
def latent_cache(tmp_path_factory):
    """Shared across tests: the same base and prompts reuse their latents, as jobs do."""
    return tmp_path_factory.mktemp("cache")
