"""`check-scores`: which protocol a published ACC/SE/SP can have come from (mlscorecheck's exact tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from retinalight.check_scores import main as check_main
from retinalight.metrics.scorecheck import check_scores, consistent_with, tolerance

RESULTS = Path(__file__).resolve().parent.parent / "results"
pytest.importorskip("mlscorecheck")


def verdicts(scores: dict, dataset: str = "drive") -> dict[tuple[str, str], str]:
    rows = check_scores(dataset, "test", scores, tolerance(scores))
    return {(r["region"], r["aggregation"]): r["verdict"] for r in rows}


def test_our_committed_rows_are_consistent_with_their_own_protocol_only():
    """The committed `fast` SA-UNet seed 0 (pooled test metrics), at 4 decimals."""
    metrics = json.loads((RESULTS / "ablation_drive" / "sa_unet" / "fast-4e73c162" / "seed0" / "metrics.json").read_text())
    for ours, other in (("fov", "image"), ("image", "fov")):
        pooled = metrics["protocols"][ours]["pooled"]
        found = verdicts({k: round(pooled[k], 4) for k in ("acc", "se", "sp")})
        assert found[(ours, "pooled")] == "consistent", (ours, found)
        assert found[(other, "pooled")] == found[(other, "mean")] == "inconsistent", (ours, found)


def test_published_rows_sa_unet_table_ii_is_whole_image_and_retina_gan_table_1_is_neither():
    sa_unet = verdicts({"acc": 0.9698, "se": 0.8212, "sp": 0.9840})
    assert sa_unet == {
        ("fov", "pooled"): "inconsistent",
        ("fov", "mean"): "inconsistent",
        ("image", "pooled"): "consistent",
        ("image", "mean"): "consistent",
    }
    retina_gan = check_scores(
        "drive", "test", {"acc": 0.969, "se": 0.792, "sp": 0.980}, tolerance({"acc": "0.969", "se": "0.792", "sp": "0.980"})
    )
    assert consistent_with(retina_gan) == "none"
    assert set(verdicts({"acc": 0.99, "se": 0.2, "sp": 0.5}).values()) == {"inconsistent"}  # impossible: nothing


def test_chase_db1_has_no_fov_counts_and_says_so():
    found = verdicts({"acc": 0.9755, "se": 0.8573, "sp": 0.9835}, "chase_db1")  # SA-UNet, Table III
    assert found[("fov", "pooled")] == found[("fov", "mean")] == "no counts"
    assert found[("image", "pooled")] == "consistent"


def test_the_command_prints_a_table_and_without_mlscorecheck_fails_in_one_line(capsys, monkeypatch):
    from retinalight.cli import run_main

    assert check_main(["--acc", "0.9698", "--se", "0.8212", "--sp", "0.9840"]) == 0
    out = capsys.readouterr().out
    assert "tolerance 5e-05" in out and "consistent with: image, pooled; image, mean" in out
    monkeypatch.setitem(sys.modules, "mlscorecheck", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "mlscorecheck.check.bundles", None)
    from retinalight.metrics import scorecheck

    scorecheck._checked.cache_clear()
    with pytest.raises(SystemExit) as exit:
        run_main(check_main, ["--acc", "0.9", "--se", "0.8", "--sp", "0.95"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "pip install 'retinalight[check]'" in err and err.count("\n") == 1


@pytest.mark.parametrize("summary", ["ablation_drive/summary-fast@cpu-bf16.md", "ablation_chase/summary-fast@cpu-bf16.md"])
def test_committed_summaries_give_each_paper_row_its_verdict(summary):
    rows = [line for line in (RESULTS / summary).read_text().splitlines() if "(paper)" in line]
    assert len(rows) == 5 and all("consistent with:" in line for line in rows)
