"""The `.env.best_run` contract: what register writes, serving and promotion read back."""

from __future__ import annotations

import pytest

from helper.best_run import ENV_KEYS, REQUIRED, BestRunError, read_best_run, write_best_run
from helper.errors import PlatformError


def _values() -> dict[str, str]:
    return {key: f"v-{i}" for i, key in enumerate(ENV_KEYS)}


def test_written_file_reads_back_the_same(tmp_path):
    path = write_best_run(tmp_path / "sub" / ".env.best_run", _values())
    assert read_best_run(path) == _values()
    assert not [p for p in path.parent.iterdir() if p.name != path.name]  # no temp left


def test_hand_edited_file_with_comments_quotes_and_export_still_reads(tmp_path):
    path = tmp_path / ".env.best_run"
    path.write_text(
        "# written by hand\nexport MODEL_NAME='iris-classifier'\nMODEL_VERSION=\"4\"\n"
        "STORAGE_URI=s3://b/mlflow/1/models/m-1/artifacts  # champion to be\n"
    )
    values = read_best_run(path)
    assert values["MODEL_NAME"] == "iris-classifier" and values["MODEL_VERSION"] == "4"
    assert values["STORAGE_URI"] == "s3://b/mlflow/1/models/m-1/artifacts"


@pytest.mark.parametrize("missing", REQUIRED)
def test_a_missing_required_key_is_named(tmp_path, missing):
    values = {k: v for k, v in _values().items() if k != missing}
    path = write_best_run(tmp_path / ".env.best_run", values)
    with pytest.raises(BestRunError, match=f"missing {missing}"):
        read_best_run(path)


def test_absent_file_says_what_to_run_and_is_a_platform_error(tmp_path):
    with pytest.raises(PlatformError, match="task ml:register"):
        read_best_run(tmp_path / "nope")


def test_a_value_a_shell_would_misread_is_refused_and_the_old_file_kept(tmp_path):
    path = write_best_run(tmp_path / ".env.best_run", _values())
    with pytest.raises(BestRunError, match="RUN_ID"):
        write_best_run(path, {**_values(), "RUN_ID": "a b'"})
    assert read_best_run(path) == _values()
