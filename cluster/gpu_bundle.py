"""The wheels a GPU machine without network lacks, gathered in one folder and checked for completeness.

    python cluster/gpu_bundle.py .gpu/wheels              # download (Python 3.12, manylinux x86_64), then check
    python cluster/gpu_bundle.py .gpu/wheels --check      # check an existing folder only

What is needed: every distribution `retinalight` requires at run time, followed through their requirements
(environment markers evaluated for the target Python on Linux x86_64), at the versions installed here (the
ones CI tests), less those the GPU machine already has (`--machine-packages`, one name a line: the image's
package list) and less the optional ones (`OPTIONAL`: imported only by a command option). pip resolves
nothing on the GPU machine (it installs with --no-deps --no-index), so the check is what makes
`import retinalight` and every command's imports resolve there: one wheel per needed distribution, each
installable on the target, nothing twice. Standard library and `packaging` only: it runs before the
package is installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import platform
import subprocess
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.tags import Tag, cpython_tags, platform_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

MACHINE_PACKAGES = Path(__file__).with_name("h200-packages.txt")
OPTIONAL = {"wandb": "imported only by `fit --logger wandb`: the GPU run logs CSV"}  # name -> why it is not carried
# carried even where the machine has it: pydantic 2.13 needs typing-extensions >= 4.14.1, and the image's version is not
# known (a newer typing-extensions on the path first is backward compatible)
CARRIED_ANYWAY = {"typing-extensions"}
MANYLINUX = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"]
MAX_BYTES = 20 * 2**20


class BundleError(Exception):
    """A bundle that would not install or import on the target: one line."""


def target_environment(python: str) -> dict[str, str]:
    """Marker values of the target: CPython `python` ("3.12") on Linux x86_64."""
    env = default_environment()
    env.update(
        python_version=python,
        python_full_version=f"{python}.0",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        sys_platform="linux",
        platform_system="Linux",
        platform_machine="x86_64",
        os_name="posix",
    )
    return env


def machine_packages(path: Path = MACHINE_PACKAGES) -> set[str]:
    """Canonical names the GPU machine's image already holds (`#` starts a comment), less CARRIED_ANYWAY."""
    if not path.is_file():
        raise BundleError(f"{path}: no such package list (one distribution name a line)")
    names = (line.split("#")[0].split("==")[0].strip() for line in path.read_text().splitlines())
    return {canonicalize_name(name) for name in names if name} - CARRIED_ANYWAY


def needed(python: str, present: set[str], root: str = "retinalight") -> dict[str, str]:
    """{canonical name: version installed here} of every distribution `root` needs at run time on the target
    that is neither `present` there (its own requirements are the machine's, not followed) nor OPTIONAL."""
    env, found, stack = target_environment(python), {}, [root]
    while stack:
        name = canonicalize_name(stack.pop())
        if name in found or name in OPTIONAL or name in present:
            continue
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise BundleError(f"{name} is not installed here, so its version and requirements are unknown: pip install it first") from None
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({**env, "extra": ""}):
                stack.append(requirement.name)
    found.pop(canonicalize_name(root))
    return dict(sorted(found.items()))


def target_tags(python: str) -> set[Tag]:
    """Wheel tags CPython `python` installs on manylinux x86_64, pure-Python ones included."""
    major, minor = (int(p) for p in python.split("."))
    platforms = [p for p in platform_tags() if "x86_64" in p] if platform.machine() == "x86_64" else []
    platforms = sorted({*MANYLINUX, *platforms, "linux_x86_64"})
    tags = set(cpython_tags((major, minor), platforms=platforms))
    tags |= {Tag(interp, "none", "any") for interp in (f"py{major}", f"py{major}{minor}", f"cp{major}{minor}")}
    tags |= {Tag(f"py{major}", "none", plat) for plat in platforms}
    return tags


def check_bundle(folder: Path, python: str, wanted: dict[str, str]) -> list[str]:
    """One line per wheel; raises BundleError naming what is missing, doubled, foreign or over MAX_BYTES."""
    if not folder.is_dir():
        raise BundleError(f"{folder}: no such wheel folder (build it: python cluster/gpu_bundle.py {folder})")
    tags, wheels = target_tags(python), {}
    for path in sorted(folder.glob("*.whl")):
        name, version, _, wheel_tags = parse_wheel_filename(path.name)
        if not wheel_tags & tags:
            raise BundleError(f"{path.name}: not installable on CPython {python} manylinux x86_64 (a wheel for another Python or platform)")
        if name in wheels:
            raise BundleError(f"{name}: two wheels ({wheels[name].name}, {path.name}); pip --no-deps installs only one version")
        wheels[name] = path
    missing = [f"{name}=={version}" for name, version in wanted.items() if name not in wheels]
    if missing:
        raise BundleError(f"{folder}: missing {', '.join(missing)} (python cluster/gpu_bundle.py {folder} downloads them)")
    total = sum(p.stat().st_size for p in wheels.values())
    if total > MAX_BYTES:
        raise BundleError(
            f"{folder}: {total / 2**20:.1f} MiB of wheels, over the {MAX_BYTES / 2**20:.0f} MiB a GPU call carries beside data"
        )
    extra = sorted(set(wheels) - set(wanted))
    lines = [f"{path.name} ({path.stat().st_size / 2**20:.2f} MiB)" for path in wheels.values()]
    note = f"; not needed there: {', '.join(extra)}" if extra else ""
    return [*lines, f"complete for CPython {python} manylinux x86_64: {len(wanted)} distributions, {total / 2**20:.1f} MiB{note}"]


def download(folder: Path, python: str, wanted: dict[str, str]) -> None:
    """pip download exactly `wanted` (no dependencies: `needed` already followed them) for the target."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.whl"):
        name, version = parse_wheel_filename(stale.name)[:2]
        if wanted.get(name) != str(version):
            stale.unlink()  # another version or no longer needed: two versions would stop the install there
    platforms = [arg for plat in MANYLINUX for arg in ("--platform", plat)]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", python]
    command += ["--implementation", "cp", *platforms, "--dest", str(folder), *(f"{n}=={v}" for n, v in wanted.items())]
    if subprocess.run(command).returncode != 0:
        raise BundleError(f"pip download failed for {', '.join(wanted)} (see its output above)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python cluster/gpu_bundle.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="the wheel folder (git-ignored; carried to the GPU machine)")
    parser.add_argument("--check", action="store_true", help="only check the folder against what is needed")
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python (default 3.12)")
    parser.add_argument(
        "--machine-packages", type=Path, default=MACHINE_PACKAGES, help=f"its package list (default {MACHINE_PACKAGES.name})"
    )
    args = parser.parse_args(argv)
    try:
        wanted = needed(args.python, machine_packages(args.machine_packages))
        if not args.check:
            download(args.folder, args.python, wanted)
        lines = check_bundle(args.folder, args.python, wanted)
    except BundleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    print("not carried: " + "; ".join(f"{name} ({why})" for name, why in OPTIONAL.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
