"""Data commands.

  python -m retinalight.data check [--data-root DIR]           verify DRIVE and CHASE_DB1 (exit 1 on any problem)
  python -m retinalight.data import FILE.zip [--data-root DIR]  unpack a publisher's archive (DRIVE.zip, training.zip,
                                                               test.zip, CHASEDB1.zip) into the data root
  python -m retinalight.data download chase_db1 [--data-root DIR] [--url URL]

The data root is --data-root, else $RETINALIGHT_DATA, else ./data.
"""

from __future__ import annotations

import argparse

from retinalight.cli import add_data_root, resolve_data_root, run_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retinalight.data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="verify layout, counts, sizes, decodability and SHA-256 of every file")
    check.add_argument("--dataset", nargs="+", choices=["drive", "chase_db1"], default=None, help="default: both")
    check.add_argument("--no-checksums", action="store_true", help="skip the SHA-256 comparison with the published files")
    importer = commands.add_parser("import", help="unpack publisher archives into the data root")
    importer.add_argument("archives", nargs="+", metavar="FILE.zip")
    downloader = commands.add_parser("download", help="download a dataset served without registration (chase_db1)")
    downloader.add_argument("dataset")
    downloader.add_argument("--url", default=None, help="alternative URL (a mirror, or file:// for a local copy)")
    for sub in (check, importer, downloader):
        add_data_root(sub)
    args = parser.parse_args(argv)
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
        return 0
    from retinalight.data.fetch import download

    print(f"{args.dataset}: {len(download(args.dataset, root, args.url))} files into {root}, SHA-256 verified")
    return 0


if __name__ == "__main__":
    run_main(main)
