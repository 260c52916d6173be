"""Data commands.

  python -m retinalight.data check [--data-root DIR]              verify every dataset present (exit 1 on any problem)
  python -m retinalight.data import ARCHIVE [--data-root DIR]      unpack a publisher's zip or tar (DRIVE's training.zip
                                                                  and test.zip, CHASEDB1.zip, STARE's three tars, HRF's all.zip)
  python -m retinalight.data download DATASET [--data-root DIR] [--url URL ...]
  python -m retinalight.data list                                 the registered datasets, their splits and sources

The data root is --data-root, else $RETINALIGHT_DATA, else ./data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from retinalight.cli import add_data_root, run_main
from retinalight.data.datasets import DATASETS, dataset_names
from retinalight.data.io import resolve_data_root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retinalight.data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="verify layout, counts, sizes, decodability and SHA-256 of every file")
    check.add_argument("--dataset", nargs="+", choices=dataset_names(files_only=True), default=None, help="default: every one present")
    check.add_argument("--no-checksums", action="store_true", help="skip the SHA-256 comparison with the published files")
    importer = commands.add_parser("import", help="unpack publisher archives into the data root")
    importer.add_argument("archives", nargs="+", metavar="ARCHIVE")
    served = [name for name, cls in DATASETS.items() if cls.downloads]
    downloader = commands.add_parser("download", help=f"download a dataset served without registration ({', '.join(served)})")
    downloader.add_argument("dataset", help=", ".join(served))
    commands.add_parser("list", help="the registered datasets: images, size, FOV source, split, where to get them")
    downloader.add_argument(
        "--url", nargs="+", default=None, metavar="URL", help="alternative URLs, one per archive (mirrors, or file:// for local copies)"
    )
    for sub in (check, importer, downloader):
        add_data_root(sub)
    args = parser.parse_args(argv)
    if args.command == "list":
        print(dataset_table())
        return 0
    root = resolve_data_root(args.data_root)
    if args.command == "check":
        from retinalight.data.check import check_root, format_reports

        reports = check_root(root, args.dataset, not args.no_checksums)
        print(format_reports(reports))
        return 0 if all(r.ok for r in reports) else 1
    if args.command == "import":
        from retinalight.data.fetch import import_archive

        for archive in args.archives:
            print(f"{archive}: {len(import_archive(archive, root))} files into {root}")
        for line in import_gaps(root):
            print(line)
        return 0
    from retinalight.data.fetch import download

    files = download(args.dataset, root, args.url)
    verified = "SHA-256 verified" if DATASETS[args.dataset].checksums else "no published checksums to verify"
    print(f"{args.dataset}: {len(files)} files into {root}, {verified}")
    return 0


def import_gaps(root: Path) -> list[str]:
    """One line per dataset folder under `root` that lacks a part of the dataset, and what that rules out."""
    lines = []
    for name in dataset_names(files_only=True):
        reader = DATASETS[name](root)
        if not reader.path.is_dir():
            continue
        missing = reader.missing_parts()
        if not missing:
            continue
        parts = ", ".join(f"{split} {part} ({len(paths)})" for (split, part), paths in missing.items())
        splits = {split for split, _ in missing}
        rules_out = (
            "test scores do not work (fit tests every run; `evaluate --pred-dir` and `predict` still work)"
            if splits == {"test"}
            else "training does not work"
        )
        lines.append(f"{reader.title}: still missing {parts}: {rules_out}; import the archive that holds them")
    return lines


def dataset_table() -> str:
    lines = []
    for name in dataset_names(files_only=True):
        cls = DATASETS[name]
        reader = cls(".")
        counts = cls.published_counts or {split: len(reader.ids(split)) for split in ("training", "test")}
        height, width = cls.size
        fov = "published masks" if cls.fov_masks else "computed from the image"
        lines += [
            f"{name}: {cls.title}, {counts['training']} training + {counts['test']} test images of {width}x{height}, FOV {fov}",
            f"    split: {cls.split_reference}",
            f"    get it: {'`python -m retinalight.data download ' + name + '`' if cls.downloads else cls.source}",
            f"    checksums: {'published SHA-256 of every file' if cls.checksums else 'none shipped (not checked against the real files here)'}",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_main(main)
