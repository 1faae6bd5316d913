"""The dbt models pass sqlfluff, configured by `.sqlfluff` at the repository root.

The same check as `make lint` (`.venv/bin/sqlfluff lint dbt_project/models`), through
sqlfluff's Python API. Templating and parse errors are violations too (TMP, PRS), so a
model that the jinja templater cannot render fails here as well.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlfluff.core import FluffConfig, Linter

REPO = Path(__file__).resolve().parents[2]
MODELS = Path("dbt_project") / "models"


# sqlfluff reads `.sqlfluffignore` with a pathspec pattern class that pathspec deprecates.
@pytest.mark.filterwarnings("ignore:GitIgnorePattern:DeprecationWarning")
def test_dbt_models_pass_sqlfluff(monkeypatch: pytest.MonkeyPatch) -> None:
    # As `sqlfluff lint` from the root: the root `.sqlfluff` applies and paths read as there.
    monkeypatch.chdir(REPO)
    linter = Linter(config=FluffConfig.from_root())
    records = linter.lint_paths((str(MODELS),)).as_records()

    models = sorted(str(path) for path in MODELS.rglob("*.sql"))
    assert models, f"no models under {MODELS}"
    assert sorted(record["filepath"] for record in records) == models

    problems = [
        f"{record['filepath']}:{violation['start_line_no']}:{violation['start_line_pos']}: "
        f"{violation['code']} {violation['description']}"
        for record in records
        for violation in record["violations"]
    ]
    assert not problems, (
        f"sqlfluff found {len(problems)} problem(s) in the dbt models "
        "(`.venv/bin/sqlfluff lint dbt_project/models` shows them; "
        "`.venv/bin/sqlfluff fix` mends most layout ones):\n" + "\n".join(problems)
    )
