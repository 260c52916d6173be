"""A report of one experiment's runs: report.md with the summary table and PNG figures (headless matplotlib).

  python -m retinalight.report runs/ablation_drive                  # its one summary without overrides
  python -m retinalight.report results/retinagan_drive --label quick --out report/
  python -m retinalight.report runs/ablation_drive --compare LadderNet=peers/laddernet/    # 01_test.png-style maps

Figures (each skipped, with a line in report.md saying why, when its inputs are absent):
- per_image_<protocol>.png: ACC, SE and SP of every test image for every arm (Retina-GAN's Figs. 9-11);
- topology_<protocol>.png: clDice and the patch Betti-0/1 errors of every test image for every arm scored
  with them (retinalight.metrics.topology);
- pooled_<protocol>.png: pooled AUC and F1 per arm, mean and seeds, the paper's value beside ours;
- claims_<protocol>.png: each of the experiment's `paper.claims` with its difference, interval and verdict;
- curves.png: validation AUC against training minutes (each run's curve.csv); losses.png: training and
  validation loss per epoch (SA-UNet's Fig. 2); adversarial.png (GAN arms): the discriminator's accuracy on
  real and on generated maps and the generator's adversarial loss against batches;
- roc_pr_<protocol>.png: ROC and precision-recall curves per arm (seed 0's predictions);
- panels.png: image, ground truth and each arm's map (a GAN arm's regrouped from its patches) with true positives white, false positives red and
  false negatives blue, plus a zoomed detail (SA-UNet's Figs. 5-7); needs the runs' predictions/.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import numpy as np
import yaml

from retinalight.cli import add_data_root, run_main
from retinalight.data.io import resolve_data_root
from retinalight.errors import DataFileError
from retinalight.metrics.segmentation import METRICS

PER_IMAGE = (("acc", "ACC"), ("se", "SE"), ("sp", "SP"))
TOPOLOGY_PANEL = (("cldice", "clDice"), ("b0_error", "Betti-0 error (64x64 patches)"), ("b1_error", "Betti-1 error (64x64 patches)"))


def find_summary(folder: Path, label: str | None) -> Path:
    """summary-<label>.json, else the folder's one summary without overrides (summary-<profile>@<class>.json):
    chosen by name, never by modification time (which a clone makes arbitrary); several is an error listing them."""
    if label:
        path = folder / f"summary-{label}.json"
        if not path.is_file():
            raise DataFileError(f"{path}: no such summary (run `python -m retinalight.fit` first)")
        return path
    found = sorted(folder.glob("summary-*.json"))
    if not found:
        raise DataFileError(f"{folder}: no summary-*.json (is this runs/<experiment>?)")
    plain = [p for p in found if not re.search(r"-[0-9a-f]{8}(@|$)", p.stem)] or found  # no overrides hash
    if len(plain) > 1:
        labels = ", ".join(p.stem.removeprefix("summary-") for p in plain)
        raise DataFileError(f"{folder}: several summaries ({labels}); pass --label, e.g. --label {plain[0].stem.removeprefix('summary-')}")
    return plain[0]


def seed_folders(folder: Path, summary: dict, arm: str, protocol: str) -> list[Path]:
    from retinalight.rundirs import config_folder

    row = summary["protocols"][protocol]["arms"][arm]
    config = config_folder(folder, arm, summary["profile"], row["config_hash"])
    return [config / f"seed{seed}" for seed in row["seeds"]]


def save(fig, path: Path, plt) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def per_image_table(seeds: list[Path], protocol: str, panel: tuple = PER_IMAGE) -> dict[str, dict[str, float]]:
    """{image id: {metric: mean over seeds}} of the `panel` metrics from each seed's per_image.csv ({} where a
    file lacks one of them: runs scored before the topology metrics)."""
    values: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        with open(seed / "per_image.csv") as f:
            for row in csv.DictReader(f):
                if any(key not in row for key, _ in panel):
                    return {}
                if row["protocol"] == protocol:
                    cell = values.setdefault(row["id"], {})
                    for key, _ in panel:
                        cell.setdefault(key, []).append(float(row[key]))
    return {i: {k: float(np.mean(v)) for k, v in cell.items()} for i, cell in values.items()}


def plot_per_image(tables: dict[str, dict], protocol: str, out: Path, plt, panel: tuple = PER_IMAGE, name: str = "per_image") -> Path:
    """One subplot per `panel` metric, every arm's value on every test image: `<name>_<protocol>.png`."""
    ids = sorted(next(iter(tables.values())))
    fig, axes = plt.subplots(1, len(panel), figsize=(5 * len(panel), 4), constrained_layout=True)
    for ax, (key, label) in zip(axes, panel):
        for arm, table in tables.items():
            ax.plot(range(1, len(ids) + 1), [table[i][key] for i in ids], marker="o", ms=3, label=arm)
        ax.set(title=f"{label} per test image ({protocol})", xlabel="test image", xticks=range(1, len(ids) + 1))
        ax.set_xticklabels(ids, rotation=90, fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return save(fig, out / f"{name}_{protocol}.png", plt)


def plot_pooled(summary: dict, protocol: str, out: Path, plt, peers: dict | None = None) -> Path:
    arms = dict(summary["protocols"][protocol]["arms"])
    for name, result in (peers or {}).items():  # external methods: one value, no seeds
        arms[name] = {"mean": result["pooled"], "std": dict.fromkeys(result["pooled"], 0.0)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
    for ax, key in zip(axes, ("auc", "f1")):
        names = list(arms)
        means = [arms[a]["mean"][key] for a in names]
        ax.barh(names, means, color="#4c78a8", alpha=0.8, label="ours (mean over seeds)")
        for y, arm in enumerate(names):
            ax.errorbar(means[y], y, xerr=arms[arm]["std"][key], color="black", capsize=3)
            paper = (arms[arm].get("paper") or {}).get(key)
            if paper is not None and protocol == summary["paper"].get("protocol", "image"):
                ax.plot(paper, y, "D", color="#e45756", label="paper" if y == 0 else None)
        low = min(means) - 0.03
        ax.set(xlim=(max(0.0, low), min(1.0, max(means) + 0.02)), title=f"pooled {key.upper()} ({protocol})")
        ax.grid(axis="x", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    return save(fig, out / f"pooled_{protocol}.png", plt)


VERDICT_COLOURS = {"holds": "#54a24b", "reversed": "#e45756", "tie": "#888888"}


def plot_claims(summary: dict, protocol: str, out: Path, plt) -> Path | None:
    """claims_<protocol>.png: each `paper.claims` entry's mean per-image AUC and F1 difference with its 95%
    interval (a dot alone: one seed, no interval), coloured by verdict; right of 0 is the claim's way."""
    claims = [c for c in summary["protocols"][protocol].get("claims") or [] if c["test"]]
    if not claims:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(claims) + 1.4), constrained_layout=True, sharey=True)
    for ax, key in zip(axes, ("auc", "f1")):
        for y, claim in enumerate(claims):
            diff = claim["test"][key]
            colour = VERDICT_COLOURS.get(claim["verdict"], "#4c78a8")
            if diff["ci95"]:
                low, high = diff["ci95"]
                ax.errorbar(
                    diff["mean_diff"], y, xerr=[[diff["mean_diff"] - low], [high - diff["mean_diff"]]], color=colour, capsize=3, fmt="o"
                )
            else:
                ax.plot(diff["mean_diff"], y, "o", mfc="white", color=colour)
        ax.axvline(0, color="black", lw=0.8)
        ax.set(title=f"{key.upper()} difference, per image ({protocol})", xlabel="better - worse")
        ax.grid(axis="x", alpha=0.3)
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))  # four-decimal ticks overlap at matplotlib's default count
    axes[0].set_yticks(range(len(claims)), [f"{c['claim']}: {c['verdict']}" for c in claims])
    axes[0].invert_yaxis()
    return save(fig, out / f"claims_{protocol}.png", plt)


def plot_curves(curves: dict[str, list[Path]], out: Path, plt) -> Path | None:
    if not any(curves.values()):
        return None
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    for color, (arm, files) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3, curves.items()):
        for k, file in enumerate(files):
            with open(file) as f:
                rows = [r for r in csv.DictReader(f) if r.get("val/auc")]
            ax.plot(
                [float(r["train_seconds"]) / 60 for r in rows],
                [float(r["val/auc"]) for r in rows],
                color=color,
                marker=".",
                label=arm if k == 0 else None,
                alpha=0.8,
            )
    ax.set(xlabel="training minutes", ylabel="val/auc (the images data.val_mode names)", title="time to quality (curve.csv)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out / "curves.png", plt)


def plot_losses(logs: dict[str, Path], out: Path, plt) -> Path | None:
    """Training and validation loss per epoch for each arm (SA-UNet's Fig. 2), from seed 0's logs/metrics.csv."""
    logs = {arm: path for arm, path in logs.items() if path.is_file()}
    if not logs:
        return None
    curves: dict[str, dict[str, list]] = {"train/loss_epoch": {}, "val/loss": {}}
    for arm, path in logs.items():
        with open(path) as f:
            rows = list(csv.DictReader(f))
        for key, per_arm in curves.items():
            points = [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key)]
            if points:
                per_arm[arm] = points
    titles = {"train/loss_epoch": "training loss (BCE)", "val/loss": "validation loss (BCE, the images data.val_mode names)"}
    drawn = [key for key in curves if curves[key]]  # a profile without validation has no validation curve
    if not drawn:
        return None
    fig, axes = plt.subplots(1, len(drawn), figsize=(5.5 * len(drawn), 3.8), constrained_layout=True, squeeze=False)
    for ax, key in zip(axes[0], drawn):
        for arm, points in curves[key].items():
            ax.plot(*zip(*points), marker=".", label=arm)
        ax.set(xlabel="epoch", title=titles[key])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save(fig, out / "losses.png", plt)


ADVERSARIAL = {
    "train/d_acc_real_step": "discriminator accuracy on real maps",
    "train/d_acc_fake_step": "discriminator accuracy on generated maps",
    "train/g_adversarial_step": "generator adversarial loss (BCE)",
}


def plot_adversarial(logs: dict[str, Path], out: Path, plt, window: int = 5) -> Path | None:
    """Per GAN arm (seed 0's logs/metrics.csv, logged every trainer.log_every_n_steps batches): the
    discriminator's accuracy on real and on generated maps and the generator's adversarial loss, against
    batches (a moving mean of `window` points): a discriminator that wins too early shows as accuracies near 1
    and a rising generator loss while the adversarial weight ramps in."""
    series: dict[str, dict[str, tuple]] = {key: {} for key in ADVERSARIAL}
    for arm, path in logs.items():
        if not path.is_file():
            continue
        with open(path) as f:
            rows = list(csv.DictReader(f))
        for key, per_arm in series.items():
            points = [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]
            if len(points) >= window:
                steps, values = zip(*points)
                mean = np.convolve(values, np.ones(window) / window, mode="valid")
                per_arm[arm] = (steps[window - 1 :], mean)
    if not any(series.values()):
        return None
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8), constrained_layout=True)
    for ax, (key, title) in zip(axes, ADVERSARIAL.items()):
        for arm, (steps, values) in series[key].items():
            ax.plot(steps, values, label=arm)
        ax.set(xlabel="training batches", title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save(fig, out / "adversarial.png", plt)


def pixel_histograms(reader, folder: Path, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """Counts of vessel and background pixels at each of the 256 levels of a folder of 8-bit maps."""
    from retinalight.data.io import read_grey

    vessel_counts, background_counts = np.zeros(256, np.int64), np.zeros(256, np.int64)
    for id in reader.ids("test"):
        sample = reader.load(id)
        grey = read_grey(folder / f"{id}.png")
        keep = sample.fov if protocol == "fov" else np.ones_like(sample.fov)
        vessel_counts += np.bincount(grey[keep & sample.vessel], minlength=256)
        background_counts += np.bincount(grey[keep & ~sample.vessel], minlength=256)
    return vessel_counts, background_counts


def plot_roc_pr(histograms: dict[str, tuple[np.ndarray, np.ndarray]], protocol: str, out: Path, plt) -> Path:
    """ROC and precision-recall curves per arm, exact for 8-bit maps (one point per grey level)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), constrained_layout=True)
    for arm, (vessel, background) in histograms.items():
        tp = np.cumsum(vessel[::-1])  # predicted vessel at threshold >= level, from 255 down
        fp = np.cumsum(background[::-1])
        tpr, fpr = tp / vessel.sum(), fp / background.sum()
        precision = tp / np.maximum(tp + fp, 1)
        axes[0].plot(fpr, tpr, label=arm)
        axes[1].plot(tpr, precision, label=arm)
    axes[0].set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC ({protocol})", xlim=(0, 0.3), ylim=(0.6, 1))
    axes[1].set(xlabel="recall", ylabel="precision", title=f"precision-recall ({protocol})", xlim=(0.5, 1), ylim=(0.5, 1))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save(fig, out / f"roc_pr_{protocol}.png", plt)


def error_map(prob: np.ndarray, vessel: np.ndarray, fov: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """RGB: true positives white, false positives red, false negatives blue, outside the FOV dark grey."""
    pred = prob > threshold
    out = np.zeros((*vessel.shape, 3), np.uint8)
    out[~fov] = 40
    out[pred & vessel] = 255
    out[pred & ~vessel] = (230, 40, 40)
    out[~pred & vessel] = (40, 90, 255)
    return out


def plot_panels(reader, image_id: str, maps: dict[str, Path], out: Path, plt) -> Path:
    from retinalight.data.io import read_grey

    sample = reader.load(image_id)
    height, width = sample.vessel.shape
    box = (slice(height // 2 - 64, height // 2 + 64), slice(width // 4 - 64, width // 4 + 64))  # near the disc side
    columns = [("image", sample.image), ("ground truth", np.repeat(sample.vessel[..., None] * 255, 3, 2).astype(np.uint8))]
    columns += [(arm, error_map(read_grey(path) / 255, sample.vessel, sample.fov)) for arm, path in maps.items()]
    fig, axes = plt.subplots(2, len(columns), figsize=(2.6 * len(columns), 5.4), constrained_layout=True, squeeze=False)
    for k, (name, picture) in enumerate(columns):
        axes[0, k].imshow(picture)
        axes[0, k].add_patch(plt.Rectangle((box[1].start, box[0].start), 128, 128, fill=False, color="yellow", lw=1))
        axes[1, k].imshow(picture[box], interpolation="nearest")
        axes[0, k].set_title(name, fontsize=9)
        for ax in axes[:, k]:
            ax.set_axis_off()
    fig.suptitle(f"test image {image_id}: true positive white, false positive red, false negative blue", fontsize=9)
    return save(fig, out / "panels.png", plt)


def write_report(
    folder: Path,
    label: str | None = None,
    out: Path | None = None,
    data_root: str | None = None,
    image: str | None = None,
    compare: dict[str, Path] | None = None,
) -> Path:
    """Figures and report.md for the summary `label` (default: the one without overrides, `find_summary`) of runs/<experiment> `folder`;
    `compare` adds external prediction folders ({name: folder}), scored with the same protocols."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from retinalight.data.datasets import get_dataset
    from retinalight.summary import format_markdown

    folder = Path(folder)
    summary_path = find_summary(folder, label)
    summary = json.loads(summary_path.read_text())
    out = Path(out) if out else folder / f"report-{summary_path.stem.removeprefix('summary-')}"
    out.mkdir(parents=True, exist_ok=True)
    lines = [format_markdown(summary), ""]
    protocols = list(summary["protocols"])
    first = protocols[0]
    arms = list(summary["protocols"][first]["arms"])
    seeds = {arm: seed_folders(folder, summary, arm, first) for arm in arms}
    data = yaml.safe_load((seeds[arms[0]][0] / "config.yaml").read_text())["data"]
    reader = get_dataset(data["dataset"], resolve_data_root(data_root), **data.get("dataset_kwargs", {}))
    peers, table = external_predictions(summary, reader, compare) if compare else ({p: {} for p in protocols}, [])
    lines += [*table, "## Figures", ""]
    for protocol in protocols:
        tables = {arm: per_image_table(seed_folders(folder, summary, arm, protocol), protocol) for arm in arms}
        tables |= {name: {r["id"]: r for r in result["per_image"]} for name, result in peers[protocol].items()}
        lines.append(f"![per image, {protocol}]({plot_per_image(tables, protocol, out, plt).name})")
        topology = {arm: per_image_table(seed_folders(folder, summary, arm, protocol), protocol, TOPOLOGY_PANEL) for arm in arms}
        topology = {arm: table for arm, table in topology.items() if table}
        if topology:
            lines.append(
                f"![topology per image, {protocol}]({plot_per_image(topology, protocol, out, plt, TOPOLOGY_PANEL, 'topology').name})"
            )
        lines.append(f"![pooled, {protocol}]({plot_pooled(summary, protocol, out, plt, peers[protocol]).name})")
        claims = plot_claims(summary, protocol, out, plt)
        if claims:
            lines.append(f"![claims, {protocol}]({claims.name})")
    curves = plot_curves({arm: [s / "curve.csv" for s in seeds[arm] if (s / "curve.csv").is_file()] for arm in arms}, out, plt)
    lines.append(f"![curves]({curves.name})" if curves else "No learning curves: these runs validated nothing (curve.csv absent).")
    losses = plot_losses({arm: seeds[arm][0] / "logs" / "metrics.csv" for arm in arms}, out, plt)
    lines.append(f"![losses]({losses.name})" if losses else "No loss curves: the runs hold no logs/metrics.csv.")
    adversarial = plot_adversarial({arm: seeds[arm][0] / "logs" / "metrics.csv" for arm in arms}, out, plt)
    if adversarial:
        lines.append(f"![discriminator and adversarial loss]({adversarial.name})")
    lines += map_figures(seeds, reader, protocols, image, out, plt)
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def external_predictions(summary: dict, reader, compare: dict[str, Path]) -> tuple[dict, list[str]]:
    """`compare`'s prediction folders scored with the summary's protocols: ({protocol: {name: result}}, the
    report's table of them beside each arm's mean)."""
    from retinalight.metrics.folder import evaluate_folder

    reader.require()
    protocols = list(summary["protocols"])
    peers = {protocol: {name: evaluate_folder(path, reader, "test", protocol) for name, path in compare.items()} for protocol in protocols}
    lines = ["## External predictions, scored alike", ""]
    for protocol in protocols:
        lines += [f"Protocol `{protocol}`, pooled over the test pixels (8-bit maps, tied-score AUC):", ""]
        lines += ["| method | " + " | ".join(k.upper() for k in METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
        for arm, row in summary["protocols"][protocol]["arms"].items():
            lines.append(f"| {arm} (ours, mean over seeds) | " + " | ".join(f"{row['mean'][k]:.4f}" for k in METRICS) + " |")
        for name, result in peers[protocol].items():
            lines.append(f"| {name} ({compare[name]}) | " + " | ".join(f"{result['pooled'][k]:.4f}" for k in METRICS) + " |")
        lines.append("")
    return peers, lines


def map_figures(seeds: dict[str, list[Path]], reader, protocols: list[str], image: str | None, out: Path, plt) -> list[str]:
    """The panels of one test image and the ROC/PR curves, from each arm's first seed that kept its maps."""
    available = {}
    for arm, folders in seeds.items():
        kept = [s / "predictions" for s in folders if (s / "predictions").is_dir()]
        if kept:
            available[arm] = kept[0]
    if not available:
        return ["No prediction panels: the run folders hold no predictions/ (results/ keeps only metrics)."]
    reader.require()
    image_id = image or reader.ids("test")[0]
    found = {arm: d / f"{image_id}.png" for arm, d in available.items() if (d / f"{image_id}.png").is_file()}
    lines = [f"![panels]({plot_panels(reader, image_id, found, out, plt).name})"]
    for protocol in protocols:
        histograms = {arm: pixel_histograms(reader, d, protocol) for arm, d in available.items()}
        lines.append(f"![ROC and PR, {protocol}]({plot_roc_pr(histograms, protocol, out, plt).name})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retinalight.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="runs/<experiment> (or results/<experiment>)")
    parser.add_argument(
        "--label",
        default=None,
        help="which summary: summary-<label>.json, e.g. fast@cpu-bf16 (default: the folder's only summary without overrides)",
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <folder>/report-<label>)")
    parser.add_argument("--image", default=None, help="test image id of the prediction panels (default: the first)")
    parser.add_argument(
        "--compare", nargs="+", default=[], metavar="NAME=DIR", help="external prediction folders (e.g. LadderNet=maps/) beside the arms"
    )
    parser.add_argument("--index", action="store_true", help="write <folder>/INDEX.md instead: one line per summary below it (results/)")
    add_data_root(parser)
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        raise DataFileError(f"{args.folder}: not a folder")
    if args.index:
        from retinalight.summary import index_markdown

        (args.folder / "INDEX.md").write_text(index_markdown(args.folder))
        print(f"index: {args.folder / 'INDEX.md'}")
        return 0
    compare = {}
    for item in args.compare:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise DataFileError(f"--compare {item!r}: expected NAME=DIR")
        compare[name] = Path(path)
    report = write_report(args.folder, args.label, args.out, args.data_root, args.image, compare)
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    run_main(main)
