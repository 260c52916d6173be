"""`python -m retinalight.models`: print the model registry with parameter counts."""

from __future__ import annotations

import argparse

from retinalight.cli import run_main


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m retinalight.models", description=__doc__).parse_args(argv)
    from retinalight.models import describe_models

    rows = describe_models()
    width = max(len(r[0]) for r in rows)
    print(f"{'name':<{width}}  {'parameters':>11}  {'buffers':>7}  description")
    for name, params, buffers, doc in rows:
        print(f"{name:<{width}}  {params:>11,}  {buffers:>7,}  {doc}")
    return 0


if __name__ == "__main__":
    run_main(main)
