"""`serving_stack up --resume` never serves a model that nothing deployed."""

from __future__ import annotations

import pytest

from helper.settings import load_settings
from inference_service.serving_stack import ServingStack
from inference_service.state import StateError


def test_resume_without_state_refuses_and_starts_nothing(tmp_path):
    settings = load_settings(state_dir=tmp_path)
    stack = ServingStack(settings, best_run_file=tmp_path / "missing.env")
    with pytest.raises(StateError, match="nothing has been deployed"):
        stack.up(resume_only=True)
    assert not any(stack.status()["processes"].values())
    assert stack.state() is None
