"""Experiment summaries rebuilt from run folders (never from memory): summary-<label>.json and .md.

A summary reads exactly the run folders of this invocation's configs (profile and overrides included), so
runs of different configs never share a row. For each protocol: mean +- std over seeds of the pooled
metrics, the paper's numbers beside ours, and each arm's difference to the reference arm with a 95%
hierarchical bootstrap interval (seeds resampled, then test images), which accounts for both the
training-seed spread and the image sample. With one seed per arm the seed spread is unknown, and the table
says so instead of printing an interval.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from retinalight.experiments import Experiment
from retinalight.metrics.segmentation import METRICS, PROTOCOLS, Prediction, evaluate_predictions

LABELS = {"se": "SE", "sp": "SP", "acc": "ACC", "f1": "F1", "mcc": "MCC", "auc": "AUC"}
COMPARED = ("f1", "auc")  # per-image metrics compared between arms


def collect_runs(experiment: Experiment, runs_root: Path, test: str = "") -> dict[str, list[dict]]:
    """{arm: [metrics.json of each complete seed]} for the experiment's resolved config of every arm, of its
    plain test or of its further test `test` (`retinalight.rundirs.evaluation_name`)."""
    from retinalight.rundirs import config_dir, evaluation_dir

    runs: dict[str, list[dict]] = {}
    for arm in experiment.arms:
        folder = config_dir(runs_root, experiment.run_config(arm, 0))
        paths = [evaluation_dir(seed, test) / "metrics.json" for seed in sorted(folder.glob("seed*"))]
        found = [json.loads(p.read_text()) for p in paths if p.is_file()]
        if found:
            runs[arm] = sorted(found, key=lambda r: r["seed"])
    return runs


def per_image(runs: list[dict], protocol: str, metric: str) -> tuple[list[str], np.ndarray]:
    """(image ids, seeds x images array of `metric`) over the images every seed scored."""
    tables = [{row["id"]: row[metric] for row in run["protocols"][protocol]["per_image"]} for run in runs]
    ids = sorted(set.intersection(*(set(t) for t in tables)))
    return ids, np.array([[t[i] for i in ids] for t in tables])


def hierarchical_bootstrap(arm: np.ndarray, reference: np.ndarray | None = None, n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% interval of mean(arm) - mean(reference) (or of mean(arm) alone), both seeds x images arrays over
    the same images: resample each arm's seeds, then the images (paired between the arms)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(arm.shape[1], size=(n, arm.shape[1]))

    def resampled_means(values: np.ndarray) -> np.ndarray:
        seeds = rng.integers(len(values), size=(n, len(values)))
        # mean over resampled seeds of each seed's mean over resampled images
        image_means = np.take_along_axis(values[seeds], images[:, None, :].repeat(len(values), axis=1), axis=2).mean(axis=2)
        return image_means.mean(axis=1)

    diff = resampled_means(arm) - (resampled_means(reference) if reference is not None else 0.0)
    return float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))


def compare(arm_runs: list[dict], reference_runs: list[dict], protocol: str, metrics: tuple[str, ...] = COMPARED) -> dict | None:
    """Each of `metrics`' mean per-image difference to the reference, with its hierarchical interval when
    both arms have two seeds or more (`interval` None otherwise: the seed spread is unknown)."""
    out = {"seeds": [len(arm_runs), len(reference_runs)]}
    for metric in metrics:
        ids_a, a = per_image(arm_runs, protocol, metric)
        ids_r, r = per_image(reference_runs, protocol, metric)
        common = sorted(set(ids_a) & set(ids_r))
        if len(common) < 2:
            return None
        a = a[:, [ids_a.index(i) for i in common]]
        r = r[:, [ids_r.index(i) for i in common]]
        interval = hierarchical_bootstrap(a, r) if len(a) > 1 and len(r) > 1 else None
        out[metric] = {"mean_diff": float(a.mean() - r.mean()), "ci95": interval, "n_images": len(common)}
    return out


def second_observer(experiment: Experiment, protocol: str, data_root: str | None = None) -> dict | None:
    """The second human observer scored as a prediction, where the user's copy has its annotations."""
    from retinalight.data.datasets import get_dataset
    from retinalight.data.io import resolve_data_root
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


def seed_ensembles(
    experiment: Experiment, runs: dict[str, list[dict]], runs_root: Path, protocol: str, data_root: str | None = None
) -> dict:
    """{arm: the per-image mean of its seeds' saved maps, scored (pooled metrics and topology means)} for every
    arm with two seeds or more whose run folders all keep predictions/ (committed results/ folders do not)."""
    from retinalight.data.datasets import get_dataset
    from retinalight.data.io import resolve_data_root
    from retinalight.errors import RetinalightError
    from retinalight.metrics.folder import evaluate_ensemble
    from retinalight.rundirs import config_dir

    out = {}
    for arm, arm_runs in runs.items():
        folders = [config_dir(runs_root, experiment.run_config(arm, 0)) / f"seed{r['seed']}" for r in arm_runs]
        if len(folders) < 2 or not all((f / "predictions").is_dir() for f in folders):
            continue
        data = experiment.arms[arm]["sections"]["data"]
        try:
            reader = get_dataset(data.dataset, resolve_data_root(data_root or data.data_root), **data.dataset_kwargs)
            result = evaluate_ensemble(folders, reader, "test", protocol)
        except RetinalightError:  # maps missing or data absent: the table goes on without the row
            continue
        out[arm] = {"seeds": len(folders), "pooled": result["pooled"], "topology": result["topology"]["mean"]}
    return out


def paper_protocols(experiment: Experiment) -> dict[str, str]:
    """{arm: the protocols its published ACC/SE/SP/F1 are consistent with} (`retinalight.metrics.scorecheck`),
    for a DRIVE or CHASE_DB1 experiment when mlscorecheck is installed; {} otherwise."""
    from retinalight.errors import RetinalightError
    from retinalight.metrics.scorecheck import check_scores, consistent_with, tolerance

    dataset = experiment.run_config(next(iter(experiment.arms)), 0).data.dataset
    verdicts = {}
    for arm in experiment.arms:
        scores = {k: v for k, v in experiment.paper_numbers(arm).items() if k in ("acc", "se", "sp", "f1")}
        if dataset not in ("drive", "chase_db1") or len(scores) < 2:
            continue
        try:
            verdicts[arm] = consistent_with(check_scores(dataset, "test", scores, tolerance(scores), timeout=10))
        except RetinalightError:  # mlscorecheck is not installed: no verdicts
            return {}
    return verdicts


def build_summary(experiment: Experiment, runs_root: Path, data_root: str | None = None) -> dict:
    runs = collect_runs(experiment, runs_root)
    reference = experiment.paper.get("reference_arm", "unet")
    protocols = [p for p in PROTOCOLS if any(p in r["protocols"] for rs in runs.values() for r in rs)]
    summary = {
        "experiment": experiment.name,
        "profile": experiment.profile,
        "overrides": experiment.overrides,
        "hardware_class": experiment.hardware,
        "paper": experiment.paper,
        "paper_protocols": paper_protocols(experiment),
        "protocols": {},
    }
    from retinalight.rundirs import evaluation_name

    evaluation = experiment.run_config(next(iter(experiment.arms)), 0).evaluation
    tta_runs = collect_runs(experiment, runs_root, evaluation_name(evaluation.tta)) if evaluation.tta != "none" else {}
    for protocol in protocols:
        rows = {}
        ref_runs = [r for r in runs.get(reference, []) if protocol in r["protocols"]]
        for arm, all_runs in runs.items():
            arm_runs = [r for r in all_runs if protocol in r["protocols"]]
            rows[arm] = {
                **score_row(arm_runs, protocol),
                "config_hash": arm_runs[0].get("config_hash"),
                "vs_reference": compare(arm_runs, ref_runs, protocol) if arm != reference and ref_runs else None,
                "paper": experiment.paper_numbers(arm),
                "provenance": {k: arm_runs[-1].get(k) for k in ("commit", "device", "command", "train_seconds", "epochs")},
                "train_seconds": [r.get("train_seconds") for r in arm_runs],
                "commits": [r.get("commit") for r in arm_runs],  # per seed: a table completed later mixes commits
                "commands": [r.get("command") for r in arm_runs],
                "devices": [r.get("device") for r in arm_runs],
            }
        summary["protocols"][protocol] = {
            "arms": rows,
            "tta": tta_rows(runs, tta_runs, protocol, evaluation.tta),
            "topology": topology_rows(runs, reference, protocol),
            "groups": group_rows(experiment, runs, protocol),
            "ensembles": seed_ensembles(experiment, runs, runs_root, protocol, data_root),
            "second_observer": second_observer(experiment, protocol, data_root),
            "claims": [claim_test(runs, better, worse, protocol) for better, worse in experiment.claims],
        }
    summary["cross_dataset"] = cross_dataset(experiment, runs, runs_root, data_root)
    return summary


def cross_dataset(experiment: Experiment, runs: dict[str, list[dict]], runs_root: Path, data_root: str | None) -> dict | None:
    """The runs tested on each of `evaluation.datasets` (`retinalight.training.runner.extra_evaluations`):
    per test dataset (the training one first, its plain test) and arm, `score_row` of the FOV protocol and the
    clDice mean; the datasets with no test are listed as missing (not under the data root, or not run yet)."""
    from retinalight.rundirs import evaluation_name

    config = experiment.run_config(next(iter(experiment.arms)), 0)
    evaluation, trained_on = config.evaluation, config.data.dataset
    others = [d for d in evaluation.datasets if d != trained_on]
    if not others:
        return None
    tested = {
        trained_on: runs,
        **{d: collect_runs(experiment, runs_root, evaluation_name(dataset=d, scale=evaluation.scale)) for d in others},
    }
    table = {}
    for dataset, found in tested.items():
        rows = {}
        for arm, arm_runs in found.items():
            arm_runs = [r for r in arm_runs if "fov" in r["protocols"]]
            if arm_runs:
                topology = [r["protocols"]["fov"].get("topology") for r in arm_runs]
                cldice = float(np.mean([t["mean"]["cldice"] for t in topology])) if all(topology) else None
                rows[arm] = {**score_row(arm_runs, "fov"), "cldice": cldice}
        if rows:
            table[dataset] = rows
    return {"trained_on": trained_on, "scale": evaluation.scale, "tested": table, "missing": [d for d in tested if d not in table]}


def group_rows(experiment: Experiment, runs: dict[str, list[dict]], protocol: str) -> dict | None:
    """{arm: {group: images, mean per-image F1 and AUC over seeds}} for a dataset whose images have diagnosis
    groups (`RetinaDataset.group`: HRF, FIVES); None otherwise."""
    from retinalight.data.datasets import DATASETS, RetinaDataset

    dataset = DATASETS[experiment.run_config(next(iter(experiment.arms)), 0).data.dataset]
    if dataset.group is RetinaDataset.group:  # a dataset without groups
        return None
    rows = {}
    for arm, all_runs in runs.items():
        arm_runs = [r for r in all_runs if protocol in r["protocols"]]
        if not arm_runs:
            continue
        ids, f1 = per_image(arm_runs, protocol, "f1")
        _, auc = per_image(arm_runs, protocol, "auc")
        groups = [dataset.group(i) for i in ids]
        rows[arm] = {
            g: {"images": groups.count(g), **{k: float(v[:, [x == g for x in groups]].mean()) for k, v in (("f1", f1), ("auc", auc))}}
            for g in sorted(set(groups))
        }
    return rows or None


def score_row(arm_runs: list[dict], protocol: str) -> dict:
    """Seeds, mean and std over them of the pooled metrics, and the per-image F1's hierarchical interval."""
    pooled = np.array([[r["protocols"][protocol]["pooled"][k] for k in METRICS] for r in arm_runs])
    _, f1 = per_image(arm_runs, protocol, "f1")
    std = pooled.std(axis=0, ddof=1) if len(pooled) > 1 else np.zeros(len(METRICS))
    return {
        "seeds": [r["seed"] for r in arm_runs],
        "mean": dict(zip(METRICS, pooled.mean(axis=0).tolist())),
        "std": dict(zip(METRICS, std.tolist())),
        "per_image_f1_ci95": hierarchical_bootstrap(f1),
    }


def tta_rows(runs: dict[str, list[dict]], tta_runs: dict[str, list[dict]], protocol: str, tta: str) -> dict:
    """Per arm tested under `tta` (`evaluation.tta`): its scores (`score_row`), topology means, and the mean
    per-image difference to the same arm's plain test with its interval."""
    rows = {}
    for arm, all_runs in tta_runs.items():
        arm_runs = [r for r in all_runs if protocol in r["protocols"]]
        plain = [r for r in runs.get(arm, []) if protocol in r["protocols"]]
        if not arm_runs:
            continue
        topology = [r["protocols"][protocol].get("topology") for r in arm_runs]
        rows[arm] = {
            **score_row(arm_runs, protocol),
            "tta": tta,
            "vs_plain": compare(arm_runs, plain, protocol) if plain else None,
            "topology": {k: float(np.mean([t["mean"][k] for t in topology])) for k in topology[0]["mean"]} if all(topology) else None,
        }
    return rows


def topology_rows(runs: dict[str, list[dict]], reference: str, protocol: str) -> dict:
    """Per arm whose every run scored topology (runs before it did not): mean and std over seeds of each
    TOPOLOGY number (each run's mean over images), and clDice's mean per-image difference to the reference
    with its hierarchical interval."""
    from retinalight.metrics.topology import TOPOLOGY

    scored = {arm: rs for arm, all_runs in runs.items() if (rs := [r for r in all_runs if protocol in r["protocols"]])}
    scored = {arm: rs for arm, rs in scored.items() if all("topology" in r["protocols"][protocol] for r in rs)}
    rows = {}
    for arm, arm_runs in scored.items():
        table = np.array([[r["protocols"][protocol]["topology"]["mean"][k] for k in TOPOLOGY] for r in arm_runs])
        std = table.std(axis=0, ddof=1) if len(table) > 1 else np.zeros(len(TOPOLOGY))
        test = compare(arm_runs, scored[reference], protocol, ("cldice",)) if arm != reference and reference in scored else None
        patches = arm_runs[0]["protocols"][protocol]["topology"]["patches"]
        rows[arm] = {
            "seeds": len(arm_runs),
            "mean": dict(zip(TOPOLOGY, table.mean(axis=0).tolist())),
            "std": dict(zip(TOPOLOGY, std.tolist())),
        }
        rows[arm] |= {"cldice_vs_reference": test["cldice"] if test else None, "patches": patches}
    return rows


def claim_test(runs: dict[str, list[dict]], better: str, worse: str, protocol: str) -> dict:
    """A claim "better > worse" against the runs: the per-image differences (`compare`) and a verdict on AUC,
    `holds` or `reversed` when its 95% interval excludes 0, `tie` when it spans 0, `one seed` without one."""
    found = [[r for r in runs.get(arm, []) if protocol in r["protocols"]] for arm in (better, worse)]
    test = compare(*found, protocol) if all(found) else None
    if test is None:
        verdict = "not run"
    elif not test["auc"]["ci95"]:
        verdict = f"one seed: {'ahead' if test['auc']['mean_diff'] > 0 else 'behind'}, no interval"
    else:
        low, high = test["auc"]["ci95"]
        verdict = "holds" if low > 0 else "reversed" if high < 0 else "tie"
    return {"claim": f"{better} > {worse}", "test": test, "verdict": verdict}


def _difference(diff: dict) -> str:
    return f"{diff['mean_diff']:+.4f}" + (f" [{diff['ci95'][0]:+.4f}, {diff['ci95'][1]:+.4f}]" if diff["ci95"] else "")


def _versus(test: dict | None) -> str:
    if not test:
        return "-"
    cells = [f"{LABELS[metric]} {_difference(test[metric])}" for metric in COMPARED]
    if not test[COMPARED[0]]["ci95"]:
        cells.append("(1 seed: seed spread unknown, no interval)")
    return "; ".join(cells)


def format_markdown(summary: dict) -> str:
    paper = summary.get("paper") or {}
    reference = paper.get("reference_arm", "unet")
    overrides = " ".join(summary.get("overrides") or []) or "none"
    lines = [f"# {summary['experiment']} (profile: {summary['profile']}; overrides: {overrides})", ""]
    if summary.get("hardware_class"):
        lines += [
            f"Configs resolved for the `{summary['hardware_class']}` speed class (retinalight.hardware); each run's machine below.",
            "",
        ]
    if paper.get("source"):
        lines += [f"Paper numbers: {paper['source']}, protocol `{paper.get('protocol', 'image')}`.", ""]
    for protocol, block in summary["protocols"].items():
        lines += _scores_table(summary, protocol, block)
        lines += _claims_table(block.get("claims"), protocol)
        lines += _group_table(block.get("groups"), protocol)
        lines += _topology_table(block.get("topology") or {}, protocol, reference, block.get("ensembles") or {}, block.get("tta") or {})
    lines += _cross_dataset_table(summary.get("cross_dataset"))
    lines += _provenance_table(next(iter(summary["protocols"].values()), {}).get("arms", {}))
    return "\n".join(lines)


def _mean_cells(row: dict) -> str:
    spread = len(row["seeds"]) > 1  # a std over one seed would read as "no spread"
    return " | ".join(f"{row['mean'][k]:.4f}" + (f" +- {row['std'][k]:.4f}" if spread else "") for k in METRICS)


def _scores_table(summary: dict, protocol: str, block: dict) -> list[str]:
    """One protocol's table: each arm, the paper's row where it reports this protocol, TTA, ensembles and the
    second observer."""
    paper = summary.get("paper") or {}
    reference = paper.get("reference_arm", "unet")
    lines = [
        f"## Protocol `{protocol}`: {PROTOCOLS[protocol]}",
        "",
        "Pooled over all test pixels; mean +- std over seeds (std shown from two seeds on). Intervals: hierarchical "
        "bootstrap over seeds, then images.",
        "",
        "| arm | seeds | "
        + " | ".join(LABELS.values())
        + f" | F1 per image, 95% CI | vs {reference}: mean per-image difference [95% CI] |",
        "|" + "---|" * (len(LABELS) + 4),
    ]
    for arm, row in block["arms"].items():
        lo, hi = row["per_image_f1_ci95"]
        lines.append(f"| {arm} | {len(row['seeds'])} | {_mean_cells(row)} | [{lo:.4f}, {hi:.4f}] | {_versus(row['vs_reference'])} |")
        if row["paper"] and protocol == paper.get("protocol", "image"):
            verdict = (summary.get("paper_protocols") or {}).get(arm)
            lines.append(
                f"| {arm} (paper) | | "
                + " | ".join(f"{row['paper'][k]:.4f}" if k in row["paper"] else "-" for k in METRICS)
                + f" | | {f'published scores consistent with: {verdict}' if verdict else ''} |"
            )
    for arm, row in (block.get("tta") or {}).items():
        lo, hi = row["per_image_f1_ci95"]
        versus = _versus(row["vs_plain"]).replace("F1", f"vs {arm} without TTA: F1", 1) if row["vs_plain"] else "-"
        lines.append(f"| {arm} (TTA {row['tta']}) | {len(row['seeds'])} | {_mean_cells(row)} | [{lo:.4f}, {hi:.4f}] | {versus} |")
    for arm, ensemble in (block.get("ensembles") or {}).items():
        cells = " | ".join(f"{ensemble['pooled'][k]:.4f}" for k in METRICS)
        lines.append(f"| {arm} (ensemble of {ensemble['seeds']}) | {ensemble['seeds']} | {cells} | | mean of the seeds' maps, scored |")
    if block.get("second_observer"):
        so = block["second_observer"]
        lines.append("| 2nd human observer | | " + " | ".join(f"{so[k]:.4f}" for k in METRICS) + " | | |")
    return [*lines, ""]


def _claims_table(claims: list | None, protocol: str) -> list[str]:
    if not claims:
        return []
    lines = [
        f"Claims (`paper.claims`), protocol `{protocol}`: mean per-image difference [95% CI]; the verdict reads the AUC interval.",
        "",
        "| claim | seeds | AUC | F1 | verdict |",
        "|---|---|---|---|---|",
    ]
    for claim in claims:
        test = claim["test"]
        cells = [_difference(test[m]) for m in ("auc", "f1")] if test else ["-", "-"]
        seeds = " vs ".join(map(str, test["seeds"])) if test else "-"
        lines.append(f"| {claim['claim']} | {seeds} | {cells[0]} | {cells[1]} | {claim['verdict']} |")
    return [*lines, ""]


def _provenance_table(arms: dict) -> list[str]:
    if not arms:
        return []
    lines = [
        "| arm | config | training seconds per seed | commit (per seed when they differ) | device (likewise) |",
        "|---|---|---|---|---|",
    ]
    for arm, row in arms.items():
        seconds = ", ".join(f"{t:.0f}" for t in row["train_seconds"] if t is not None)
        commits = row.get("commits") or [row["provenance"]["commit"]]
        devices = row.get("devices") or [row["provenance"]["device"]]
        lines.append(f"| {arm} | {row['config_hash']} | {seconds} | {_per_seed(commits)} | {_per_seed(devices)} |")
    commands = dict.fromkeys(c for row in arms.values() for c in row.get("commands") or [row["provenance"]["command"]])
    return [*lines, "", "Commands that trained these runs: " + "; ".join(f"`{c}`" for c in commands), ""]


def _topology_table(rows: dict, protocol: str, reference: str, ensembles: dict, tta: dict) -> list[str]:
    """The topology table of one protocol (retinalight.metrics.topology); '-' for the paper, which gives none."""
    from retinalight.metrics.topology import TOPOLOGY

    if not rows:
        return []
    patches = next(iter(rows.values()))["patches"]
    lines = [
        f"Topology, protocol `{protocol}` (each run's mean over images; mean +- std over seeds): clDice; b0/b1 error = mean |Betti "
        f"number difference| over {patches}; b0 error (image) and components on the whole map. The paper gives none of these.",
        "",
        f"| arm | seeds | {' | '.join(TOPOLOGY)} | clDice vs {reference}: mean per-image difference [95% CI] |",
        "|" + "---|" * (len(TOPOLOGY) + 3),
    ]
    for arm, row in rows.items():
        spread = row["seeds"] > 1
        cells = " | ".join(f"{row['mean'][k]:.4f}" + (f" +- {row['std'][k]:.4f}" if spread else "") for k in TOPOLOGY)
        versus = _difference(row["cldice_vs_reference"]) if row["cldice_vs_reference"] else "-"
        lines.append(f"| {arm} | {row['seeds']} | {cells} | {versus} |")
    for arm, row in tta.items():
        if row["topology"]:
            cells = " | ".join(f"{row['topology'][k]:.4f}" for k in TOPOLOGY)
            lines.append(f"| {arm} (TTA {row['tta']}) | {len(row['seeds'])} | {cells} | - |")
    for arm, ensemble in ensembles.items():
        cells = " | ".join(f"{ensemble['topology'][k]:.4f}" for k in TOPOLOGY)
        lines.append(f"| {arm} (ensemble of {ensemble['seeds']}) | {ensemble['seeds']} | {cells} | - |")
    return [*lines, ""]


def _group_table(groups: dict | None, protocol: str) -> list[str]:
    if not groups:
        return []
    lines = [
        f"Per diagnosis group, protocol `{protocol}`: mean over seeds and the group's test images of the per-image scores.",
        "",
        "| arm | group | images | F1 | AUC |",
        "|---|---|---|---|---|",
    ]
    for arm, rows in groups.items():
        lines += [f"| {arm} | {g} | {row['images']} | {row['f1']:.4f} | {row['auc']:.4f} |" for g, row in rows.items()]
    return [*lines, ""]


def _cross_dataset_table(cross: dict | None) -> list[str]:
    if not cross:
        return []
    how = (
        "each image resized so its FOV has the training images' median diameter" if cross["scale"] == "fov" else "images at their own scale"
    )
    lines = [
        f"## Cross-dataset, protocol `fov`: trained on {cross['trained_on']}, tested on each dataset's test split ({how})",
        "",
        "Mean +- std over seeds of the pooled scores; clDice: mean over images, then seeds.",
        "",
        "| arm | trained on | tested on | seeds | AUC | F1 | clDice | F1 per image, 95% CI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset, rows in cross["tested"].items():
        for arm, row in rows.items():
            spread = len(row["seeds"]) > 1
            auc, f1 = (f"{row['mean'][k]:.4f}" + (f" +- {row['std'][k]:.4f}" if spread else "") for k in ("auc", "f1"))
            cldice = f"{row['cldice']:.4f}" if row["cldice"] is not None else "-"
            lo, hi = row["per_image_f1_ci95"]
            lines.append(
                f"| {arm} | {cross['trained_on']} | {dataset} | {len(row['seeds'])} | {auc} | {f1} | {cldice} | [{lo:.4f}, {hi:.4f}] |"
            )
    if cross["missing"]:
        lines += ["", f"Not tested (not under the data root, or not run yet): {', '.join(cross['missing'])}."]
    return [*lines, ""]


def _per_seed(values: list) -> str:
    """One value when every seed shares it, else the values in seed order."""
    return str(values[0]) if len(set(values)) == 1 else ", ".join(map(str, values))


def summary_paths(experiment: Experiment, runs_root: Path) -> tuple[Path, Path]:
    """runs/<exp>/summary-<label>.json and .md: one summary per profile and set of overrides."""
    base = Path(runs_root) / experiment.name / f"summary-{experiment.label}"
    return base.with_suffix(".json"), base.with_suffix(".md")


def write_summary(experiment: Experiment, runs_root: Path, data_root: str | None = None) -> dict:
    from retinalight.rundirs import write_json

    json_path, md_path = summary_paths(experiment, runs_root)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    summary = build_summary(experiment, runs_root, data_root)
    write_json(json_path, summary)
    md_path.write_text(format_markdown(summary))
    return summary


def index_markdown(results: Path) -> str:
    """results/INDEX.md: one line per summary below `results` (experiment, profile, overrides, seeds,
    hardware class, commits, the arm with the best pooled FOV AUC, links to its table and report)."""
    lines = [
        "# Results index",
        "",
        f"Generated by `python -m retinalight.report --index {results.name}` from the summary JSONs; one line per table.",
        "Headline: the arm with the best pooled FOV AUC (mean over its seeds), with its FOV F1.",
        "",
        "| experiment | profile | overrides | seeds | hardware class | commits | headline (FOV AUC / F1) | table | report |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(results.rglob("summary-*.json")):  # runs roots of their own too (results/cross_dataset/<exp>/)
        where = path.parent.relative_to(results).as_posix()
        summary = json.loads(path.read_text())
        arms = (summary.get("protocols", {}).get("fov") or {}).get("arms") or {}
        label = path.stem.removeprefix("summary-")
        hardware = summary.get("hardware_class") or (label.rpartition("@")[2] if "@" in label else "-")
        seeds = max((len(row["seeds"]) for row in arms.values()), default=0)
        commits = sorted({c for row in arms.values() for c in row.get("commits") or [] if c})
        best = max(arms.items(), key=lambda item: item[1]["mean"]["auc"], default=None)
        headline = f"{best[0]} {best[1]['mean']['auc']:.4f} / {best[1]['mean']['f1']:.4f}" if best else "-"
        report = path.parent / f"report-{label}" / "report.md"
        cells = [
            where,
            str(summary.get("profile", "-")),
            ", ".join(f"`{o}`" for o in summary.get("overrides") or []) or "none",
            str(seeds),
            hardware,
            ", ".join(commits) or "-",
            headline,
            f"[{path.with_suffix('.md').name}]({where}/{path.with_suffix('.md').name})",
            f"[report]({where}/report-{label}/report.md)" if report.is_file() else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
