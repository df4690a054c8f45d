"""Who serves: champion and canary revisions and the canary's traffic share.

This mirrors an InferenceService with `canaryTrafficPercent`: the newest
revision gets `canary_percent` of the traffic, the last promoted one the rest.
Transitions are pure functions returning a new state, so they can be tested
without processes; `save_state` writes atomically (temp file + rename) so a reader
never sees half a document, and the state survives restarts of every serving
process (HAProxy's config is generated from it at start, its runtime API follows it).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from helper.atomic import atomic_write
from helper.errors import PlatformError
from helper.settings import Settings


class StateError(PlatformError, RuntimeError):
    """A transition that makes no sense in the current state; the message says why."""


class Revision(BaseModel):
    """One deployed model version and the local predictor slot (port) that serves it."""

    version: str = Field(min_length=1)
    storage_uri: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    run_id: str | None = None


class ServingState(BaseModel):
    model_name: str = Field(min_length=1)
    champion: Revision
    canary: Revision | None = None
    canary_percent: int = Field(0, ge=0, le=100)
    updated_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())

    def routes(self) -> list[tuple[str, Revision, int]]:
        """(revision role, revision, percent) for every revision that should get traffic."""
        canary_share = self.canary_percent if self.canary else 0
        out = [("champion", self.champion, 100 - canary_share)]
        if self.canary and canary_share:
            out.append(("canary", self.canary, canary_share))
        return out


def revision_name(model_name: str, version: str) -> str:
    """The local revision name (the `revision` label of the predictor's metrics); in a
    Knative pod the same label carries the Knative revision (K_REVISION)."""
    return f"{model_name}-v{version}"


def state_file(settings: Settings) -> Path:
    return settings.state_dir / "serving" / "state.json"


def load_state(path: Path) -> ServingState | None:
    """The saved state, or None when nothing was deployed yet; a corrupt file is an error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return ServingState.model_validate_json(text)
    except ValidationError as exc:
        raise StateError(f"{path}: not a valid serving state ({exc.errors()[0]['msg']})") from None


def save_state(path: Path, state: ServingState) -> None:
    state = state.model_copy(update={"updated_at": datetime.now(UTC).isoformat()})
    atomic_write(path, json.dumps(state.model_dump(mode="json"), indent=2))


# --- transitions -------------------------------------------------------------------
def with_canary(state: ServingState, revision: Revision, percent: int) -> ServingState:
    """Deploy `revision` as canary at `percent` (same version again: only the share changes)."""
    if not 0 <= percent <= 100:
        raise StateError(f"percent: {percent} is not between 0 and 100")
    if revision.version == state.champion.version:
        raise StateError(
            f"version {revision.version} is already the champion; register a new version first"
        )
    if revision.port == state.champion.port:
        raise StateError(f"port {revision.port} is the champion's; the canary needs the other slot")
    return state.model_copy(update={"canary": revision, "canary_percent": percent})


def promoted(state: ServingState) -> ServingState:
    """The canary becomes the champion at 100 %."""
    if state.canary is None:
        raise StateError("no canary to promote; deploy one with `task serve:canary PERCENT=…`")
    return state.model_copy(update={"champion": state.canary, "canary": None, "canary_percent": 0})


def rolled_back(state: ServingState) -> ServingState:
    """0 % to the canary; the champion is untouched (the canary revision stays listed)."""
    if state.canary is None:
        raise StateError("no canary to roll back")
    return state.model_copy(update={"canary_percent": 0})


def free_slot(state: ServingState, ports: tuple[int, int]) -> int:
    """The predictor port the champion does not use."""
    return ports[1] if state.champion.port == ports[0] else ports[0]
