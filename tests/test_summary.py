"""Comparisons between arms that account for seeds: the hierarchical bootstrap and what the table says."""

from pathlib import Path

import numpy as np

from retinalight.summary import _versus, claim_test, compare, hierarchical_bootstrap


def test_bootstrap_interval_covers_a_true_difference_and_excludes_zero():
    rng = np.random.default_rng(0)
    images = rng.normal(0.8, 0.03, size=20)
    reference = images + rng.normal(0, 0.002, size=(3, 20))
    arm = images + 0.02 + rng.normal(0, 0.002, size=(3, 20))
    lo, hi = hierarchical_bootstrap(arm, reference)
    assert lo < 0.02 < hi and lo > 0


def test_seed_spread_widens_the_interval():
    rng = np.random.default_rng(1)
    images = rng.normal(0.8, 0.03, size=20)
    reference = images + rng.normal(0, 0.002, size=(3, 20))
    calm = images + 0.01 + rng.normal(0, 0.002, size=(3, 20))
    # the same mean difference, but one training seed of three landed far off: the interval must see it
    shaky = calm + np.array([[-0.03], [0.0], [0.03]])
    calm_width = np.diff(hierarchical_bootstrap(calm, reference))[0]
    shaky_lo, shaky_hi = hierarchical_bootstrap(shaky, reference)
    assert shaky_hi - shaky_lo > 3 * calm_width and shaky_lo < 0 < shaky_hi


def _runs(values):
    return [
        {"seed": k, "protocols": {"fov": {"per_image": [{"id": f"{i:02d}", "f1": v, "auc": v} for i, v in enumerate(row)]}}}
        for k, row in enumerate(values)
    ]


def test_one_seed_gives_no_interval_and_says_so():
    one = compare(_runs([[0.8, 0.82, 0.79]]), _runs([[0.78, 0.8, 0.77]]), "fov")
    assert one["f1"]["ci95"] is None and abs(one["f1"]["mean_diff"] - 0.02) < 1e-9
    assert "1 seed: seed spread unknown" in _versus(one)
    two = compare(_runs([[0.8, 0.82, 0.79], [0.81, 0.82, 0.8]]), _runs([[0.78, 0.8, 0.77], [0.79, 0.8, 0.78]]), "fov")
    assert two["f1"]["ci95"] is not None and "seed spread unknown" not in _versus(two)


def test_a_claim_holds_is_reversed_ties_or_waits_for_seeds():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.9, 0.97, size=20)
    runs = {
        "strong": _runs([base + 0.01 + rng.normal(0, 0.002, 20) for _ in range(3)]),
        "weak": _runs([base + rng.normal(0, 0.002, 20) for _ in range(3)]),
        "twin": _runs([base + rng.normal(0, 0.002, 20) for _ in range(3)]),
        "single": _runs([base + 0.01]),
    }
    verdicts = {
        (a, b): claim_test(runs, a, b, "fov")["verdict"]
        for a, b in [("strong", "weak"), ("weak", "strong"), ("twin", "weak"), ("single", "weak"), ("strong", "absent")]
    }
    assert verdicts == {
        ("strong", "weak"): "holds",
        ("weak", "strong"): "reversed",
        ("twin", "weak"): "tie",
        ("single", "weak"): "one seed: ahead, no interval",
        ("strong", "absent"): "not run",
    }


def test_claims_name_known_arms():
    import pytest

    from retinalight.errors import ConfigError
    from retinalight.experiments import load_experiment

    assert ("retina_gan", "r2unet") in load_experiment("retinagan_drive", "quick").claims
    with pytest.raises(ConfigError, match="unknown arm 'retina_ga'"):
        load_experiment("retinagan_drive", "quick", ["paper.claims=[retina_ga > unet]"])
    with pytest.raises(ConfigError, match="is not 'arm > other_arm'"):
        load_experiment("retinagan_drive", "quick", ["paper.claims=[retina_gan < unet]"])


def test_a_table_completed_later_names_the_commit_and_command_of_each_seed():
    from retinalight.summary import METRICS, format_markdown

    row = {
        "seeds": [0, 1],
        "config_hash": "abcd1234",
        "mean": dict.fromkeys(METRICS, 0.9),
        "std": dict.fromkeys(METRICS, 0.01),
        "per_image_f1_ci95": (0.8, 0.82),
        "vs_reference": None,
        "paper": {},
        "provenance": {"commit": "bbbbbbb", "device": "cpu", "command": "fit --seeds 0 1"},
        "train_seconds": [100.0, 90.0],
        "commits": ["aaaaaaa", "bbbbbbb"],
        "commands": ["fit --seeds 0", "fit --seeds 0 1"],
    }
    same = {**row, "commits": ["aaaaaaa", "aaaaaaa"], "commands": ["fit --seeds 0", "fit --seeds 0"]}
    summary = {"experiment": "x", "profile": "p", "protocols": {"fov": {"arms": {"a": row, "b": same}}}}
    text = format_markdown(summary)
    assert "| a | abcd1234 | 100, 90 | aaaaaaa, bbbbbbb | cpu |" in text and "| b | abcd1234 | 100, 90 | aaaaaaa | cpu |" in text
    assert "`fit --seeds 0`; `fit --seeds 0 1`" in text


def test_commit_is_dirty_for_changed_code_but_not_for_rewritten_results(tmp_path):
    import subprocess

    from retinalight.provenance import git_commit

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "results").mkdir()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "results" / "summary.md").write_text("old table")
    (tmp_path / "pkg" / "code.py").write_text("x = 1")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    assert not git_commit(tmp_path / "pkg").endswith("+dirty")
    (tmp_path / "results" / "summary.md").write_text("the table, completed")
    assert not git_commit(tmp_path / "pkg").endswith("+dirty")
    (tmp_path / "pkg" / "code.py").write_text("x = 2")
    assert git_commit(tmp_path / "pkg").endswith("+dirty")


def test_command_names_the_module_a_run_was_started_as(monkeypatch):
    from pathlib import Path

    import retinalight
    from retinalight.provenance import command_line

    package = Path(retinalight.__file__).parent
    monkeypatch.setattr("sys.argv", [str(package / "preprocess" / "__main__.py"), "--bench"])
    assert command_line() == "python -m retinalight.preprocess --bench"
    monkeypatch.setattr("sys.argv", [str(package / "fit.py"), "--exp", "ablation_drive"])
    assert command_line() == "python -m retinalight.fit --exp ablation_drive"


def test_results_index_is_up_to_date():
    """results/INDEX.md is what `python -m retinalight.report results --index` writes from the committed summaries."""
    from pathlib import Path

    from retinalight.summary import index_markdown

    results = Path(__file__).resolve().parent.parent / "results"
    assert (results / "INDEX.md").read_text() == index_markdown(results), "run: python -m retinalight.report results --index"


def test_every_committed_run_folder_is_named_by_a_committed_table():
    """No orphan config folders in results/: each <exp>/<arm>/<profile>-<hash>/ is in some summary."""
    import json
    from pathlib import Path

    results = Path(__file__).resolve().parent.parent / "results"
    named = set()
    for path in results.glob("*/summary-*.json"):
        summary = json.loads(path.read_text())
        for block in summary["protocols"].values():
            named |= {(path.parent.name, arm, f"{summary['profile']}-{row['config_hash']}") for arm, row in block["arms"].items()}
    folders = {(p.parent.parent.parent.name, p.parent.parent.name, p.parent.name) for p in results.glob("*/*/*/seed*")}
    assert folders and folders <= named, sorted(folders - named)


def test_readme_ablation_table_equals_the_committed_summaries():
    """The README's DRIVE table is copied from results/: every cell must be its summary's value at 4 digits."""
    import json

    repo = Path(__file__).resolve().parent.parent
    lines = (repo / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| arm | quick, 1 seed"))
    rows = [line.strip("|").split("|") for line in lines[start + 2 :] if line.startswith("|")][:5]
    rows = [[c.strip() for c in row] for row in rows]
    summaries = {
        name: json.loads((repo / "results" / "ablation_drive" / f"summary-{name}@cpu-bf16.json").read_text())["protocols"]
        for name in ("quick", "fast", "cpu")
    }
    columns = [("quick", "fov", "auc"), ("quick", "fov", "f1")]
    columns += [("fast", p, k) for p in ("fov", "image") for k in ("auc", "f1")]
    columns += [("cpu", p, k) for p in ("fov", "image") for k in ("auc", "f1")]
    columns += [("paper", "image", "auc"), ("paper", "image", "f1")]
    assert [row[0] for row in rows] == ["unet", "unet_sa", "sd_unet", "backbone", "sa_unet"]
    for row in rows:
        arm = row[0]
        for cell, (profile, protocol, key) in zip(row[1:], columns, strict=True):
            if profile == "paper":
                expected = summaries["fast"][protocol]["arms"][arm]["paper"][key]
            else:
                arms = summaries[profile][protocol]["arms"]
                expected = arms[arm]["mean"][key] if arm in arms else None
            assert cell == ("" if expected is None else f"{expected:.4f}"), (arm, profile, protocol, key)
