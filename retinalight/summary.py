"""Experiment summaries rebuilt from run folders (never from memory): summary.json and summary.md.

For each protocol: mean +- std over seeds of the pooled metrics, the paper's numbers beside ours, and
whether each arm's difference is real: a 95% bootstrap interval of mean per-image F1, and a paired test
(Wilcoxon signed-rank over test images) of each arm against the reference arm.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats

from retinalight.experiments import Experiment
from retinalight.metrics.segmentation import METRICS, PROTOCOLS, Prediction, evaluate_predictions

LABELS = {"se": "SE", "sp": "SP", "acc": "ACC", "f1": "F1", "mcc": "MCC", "auc": "AUC"}


def collect_runs(exp_dir: Path) -> dict[str, list[dict]]:
    """{arm: [metrics.json of each complete seed]} under runs/<exp>/."""
    runs: dict[str, list[dict]] = {}
    for path in sorted(Path(exp_dir).glob("*/seed*/metrics.json")):
        runs.setdefault(path.parent.parent.name, []).append(json.loads(path.read_text()))
    return runs


def per_image_f1(runs: list[dict], protocol: str) -> dict[str, float]:
    """{image id: F1 averaged over seeds}."""
    values: dict[str, list[float]] = {}
    for run in runs:
        for row in run["protocols"][protocol]["per_image"]:
            values.setdefault(row["id"], []).append(row["f1"])
    return {k: float(np.mean(v)) for k, v in values.items()}


def bootstrap_ci(values: np.ndarray, n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean over images."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(len(values), size=(n, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def paired_test(arm: dict[str, float], reference: dict[str, float]) -> dict | None:
    ids = sorted(set(arm) & set(reference))
    if len(ids) < 2:
        return None
    diff = np.array([arm[i] - reference[i] for i in ids])
    p = float(stats.wilcoxon(diff).pvalue) if np.any(diff) else 1.0
    return {"mean_diff": float(diff.mean()), "p_value": p, "n_images": len(ids)}


def second_observer(experiment: Experiment, protocol: str, data_root: str | None = None) -> dict | None:
    """The second human observer scored as a prediction, where the user's copy has its annotations."""
    from retinalight.cli import resolve_data_root
    from retinalight.data.datasets import get_dataset
    from retinalight.errors import RetinalightError

    data = next(iter(experiment.arms.values()))["sections"]["data"]
    try:
        reader = get_dataset(data.dataset, resolve_data_root(data_root or data.data_root), **data.dataset_kwargs)
        predictions = []
        for id in reader.ids("test"):
            other = reader.second_observer(id)
            if other is None:
                return None
            sample = reader.load(id)
            predictions.append(Prediction(id, other.astype(np.float32), sample.vessel, sample.fov))
    except (RetinalightError, NotImplementedError):
        return None
    return evaluate_predictions(predictions, protocol)["pooled"]


def build_summary(experiment: Experiment, exp_dir: Path, data_root: str | None = None) -> dict:
    runs = collect_runs(exp_dir)
    order = [a for a in experiment.arms if a in runs] + [a for a in runs if a not in experiment.arms]
    reference = experiment.paper.get("reference_arm", "unet")
    protocols = [p for p in PROTOCOLS if any(p in r["protocols"] for rs in runs.values() for r in rs)]
    summary = {"experiment": experiment.name, "profile": experiment.profile, "paper": experiment.paper, "protocols": {}}
    for protocol in protocols:
        rows = {}
        ref_f1 = per_image_f1(runs[reference], protocol) if reference in runs else {}
        for arm in order:
            arm_runs = [r for r in runs[arm] if protocol in r["protocols"]]
            pooled = np.array([[r["protocols"][protocol]["pooled"][k] for k in METRICS] for r in arm_runs])
            f1 = per_image_f1(arm_runs, protocol)
            rows[arm] = {
                "seeds": [r["seed"] for r in arm_runs],
                "mean": dict(zip(METRICS, pooled.mean(axis=0).tolist())),
                "std": dict(zip(METRICS, (pooled.std(axis=0, ddof=1) if len(pooled) > 1 else np.zeros(len(METRICS))).tolist())),
                "per_image_f1_ci95": bootstrap_ci(np.array(list(f1.values()))),
                "vs_reference": paired_test(f1, ref_f1) if arm != reference and ref_f1 else None,
                "paper": experiment.paper_numbers(arm) if arm in experiment.arms else {},
                "provenance": {k: arm_runs[-1].get(k) for k in ("commit", "device", "command", "train_seconds", "epochs")},
            }
        summary["protocols"][protocol] = {"arms": rows, "second_observer": second_observer(experiment, protocol, data_root)}
    return summary


def format_markdown(summary: dict) -> str:
    paper = summary.get("paper") or {}
    lines = [f"# {summary['experiment']} (profile: {summary['profile']})", ""]
    if paper.get("source"):
        lines += [f"Paper numbers: {paper['source']}, protocol `{paper.get('protocol', 'image')}`.", ""]
    header = (
        "| arm | seeds | "
        + " | ".join(LABELS.values())
        + " | F1 per image, 95% CI | vs "
        + paper.get("reference_arm", "unet")
        + " (F1, Wilcoxon p) |"
    )
    for protocol, block in summary["protocols"].items():
        lines += [
            f"## Protocol `{protocol}`: {PROTOCOLS[protocol]}",
            "",
            "Pooled over all test pixels; mean +- std over seeds (std shown from two seeds on).",
            "",
            header,
            "|" + "---|" * (len(LABELS) + 4),
        ]
        for arm, row in block["arms"].items():
            spread = len(row["seeds"]) > 1  # a std over one seed would read as "no spread"
            cells = " | ".join(f"{row['mean'][k]:.4f}" + (f" +- {row['std'][k]:.4f}" if spread else "") for k in METRICS)
            lo, hi = row["per_image_f1_ci95"]
            test = row["vs_reference"]
            versus = f"{test['mean_diff']:+.4f}, p={test['p_value']:.3g}" if test else "-"
            lines.append(f"| {arm} | {len(row['seeds'])} | {cells} | [{lo:.4f}, {hi:.4f}] | {versus} |")
            if row["paper"] and protocol == paper.get("protocol", "image"):
                lines.append(f"| {arm} (paper) | | " + " | ".join(f"{row['paper'].get(k, float('nan')):.4f}" for k in METRICS) + " | | |")
        if block.get("second_observer"):
            so = block["second_observer"]
            lines.append("| 2nd human observer | | " + " | ".join(f"{so[k]:.4f}" for k in METRICS) + " | | |")
        lines.append("")
    prov = next((r["provenance"] for b in summary["protocols"].values() for r in b["arms"].values()), None)
    if prov:
        lines += [f"Produced by `{prov['command']}` at commit {prov['commit']} on {prov['device']}.", ""]
    return "\n".join(lines)


def write_summary(experiment: Experiment, exp_dir: Path, data_root: str | None = None) -> dict:
    from retinalight.training.runner import write_json

    exp_dir.mkdir(parents=True, exist_ok=True)
    summary = build_summary(experiment, exp_dir, data_root)
    write_json(exp_dir / "summary.json", summary)
    (exp_dir / "summary.md").write_text(format_markdown(summary))
    return summary
