"""Score a folder of saved predictions (any method's) against a dataset split: `evaluate --pred-dir`."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from retinalight.data.datasets import RetinaDataset
from retinalight.data.io import read_probability
from retinalight.errors import DataFileError
from retinalight.metrics.segmentation import Prediction, evaluate_predictions

EXTENSIONS = (".png", ".gif", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def match_id(stem: str, ids: list[str], pattern: str | None = None) -> str | None:
    """The dataset id a prediction file's stem names, in the forms peers ship: the id itself (`01`,
    `Image_11L`), the dataset's own file stem or any suffix after a separator (`01_test`,
    `01_test_prediction`, `Image_11L_pred`), an unpadded number (`1`), or `pattern`'s group `id`."""
    if pattern:
        found = re.fullmatch(pattern, stem)
        stem = found.group("id") if found else ""
        if not stem:
            return None
    if stem in ids:
        return stem
    prefixed = [i for i in ids if re.fullmatch(rf"{re.escape(i)}[_\-. ].*", stem)]
    if len(prefixed) == 1:
        return prefixed[0]
    number = re.fullmatch(r"(\d+)(?:[_\-. ].*)?", stem)
    if number:
        numeric = [i for i in ids if i.isdigit() and int(i) == int(number.group(1))]
        if len(numeric) == 1:
            return numeric[0]
    return None


def find_predictions(pred_dir: str | Path, ids: list[str], pattern: str | None = None) -> dict[str, Path]:
    """{id: file} for every id, in the order of `ids` (`match_id` names them); an unmatched, duplicated or
    missing file is an error naming it. With `pattern`, only files whose stem it matches are read."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataFileError(f"{pred_dir}: prediction folder not found")
    if pattern is not None:
        try:
            if "id" not in re.compile(pattern).groupindex:
                raise DataFileError(f"--pattern {pattern!r}: needs a group named id, e.g. '(?P<id>\\d+)_test_prob'")
        except re.error as err:
            raise DataFileError(f"--pattern {pattern!r}: not a regular expression ({err})") from None
    found: dict[str, Path] = {}
    for path in sorted(pred_dir.iterdir()):
        if path.suffix.lower() not in EXTENSIONS or path.name.startswith("."):
            continue
        if pattern is not None and not re.fullmatch(pattern, path.stem):
            continue  # a pattern picks the maps among other files (predict writes _prob, _vessels and _overlay)
        id = match_id(path.stem, ids, pattern)
        if id is None:
            raise DataFileError(
                f"{path}: names no test image (ids {ids[0]}..{ids[-1]}; files like <id>.png, {ids[0]}_test.png; or pass --pattern)"
            )
        if id in found:
            raise DataFileError(f"{path}: second prediction for id {id!r} (also {found[id].name})")
        found[id] = path
    missing = [i for i in ids if i not in found]
    if missing:
        raise DataFileError(
            f"{pred_dir}: no prediction for {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} (expected <id>.png)"
        )
    return {i: found[i] for i in ids}  # in the split's order


def read_predictions(files: dict[str, Path], reader: RetinaDataset) -> list[Prediction]:
    """The predictions `find_predictions` matched ({id: file}), each checked against its image's size."""
    predictions = []
    for id, path in files.items():
        sample = reader.load(id)
        predictions.append(Prediction(id, read_map(path, id, sample), sample.vessel, sample.fov))
    return predictions


def read_map(path: Path, id: str, sample) -> np.ndarray:
    """The probability map in `path` (`read_probability`), checked against image `id`'s size."""
    prob = read_probability(path)
    if prob.shape != sample.vessel.shape:
        raise DataFileError(
            f"{path}: prediction is {prob.shape[1]}x{prob.shape[0]}, image {id} is {sample.vessel.shape[1]}x{sample.vessel.shape[0]}"
        )
    return prob


def evaluate_folder(
    pred_dir: str | Path, reader: RetinaDataset, split: str = "test", protocol: str = "fov", pattern: str | None = None
) -> dict:
    """Pooled and per-image metrics of the predictions in `pred_dir` (see `evaluate_predictions`), with the
    file each image was read from."""
    files = find_predictions(pred_dir, reader.ids(split), pattern)
    result = evaluate_predictions(read_predictions(files, reader), protocol)
    return {"dataset": reader.name, "split": split, "files": {i: p.name for i, p in files.items()}, **result}


def prediction_folder(folder: str | Path, dataset: str) -> Path:
    """The maps of `folder`: a run folder's predictions/ (its config must name `dataset`), else the folder itself."""
    import yaml

    folder = Path(folder)
    config = folder / "config.yaml"
    if (folder / "predictions").is_dir() and config.is_file():
        trained_on = (yaml.safe_load(config.read_text()) or {}).get("data", {}).get("dataset")
        if trained_on != dataset:
            raise DataFileError(f"{folder}: a run on {trained_on}, not {dataset} (--dataset)")
        return folder / "predictions"
    return folder


def evaluate_ensemble(
    folders: list[str | Path], reader: RetinaDataset, split: str = "test", protocol: str = "fov", pattern: str | None = None
) -> dict:
    """Score the per-image mean of several methods' (or seeds') probability maps: run folders (their
    predictions/) or prediction folders, every one covering the split's ids. A folder of another dataset or
    missing an id is one line naming it; nothing is scored until every map is read. `pattern` as --pattern
    (e.g. '(?P<id>\\d+)_test_prob' for folders `predict` wrote)."""
    if len(folders) < 2:
        raise DataFileError("--ensemble needs two folders or more")
    ids = reader.ids(split)
    files = [find_predictions(prediction_folder(f, reader.name), ids, pattern) for f in folders]
    predictions = []
    for id in ids:
        sample = reader.load(id)
        mean = np.mean([read_map(found[id], id, sample) for found in files], axis=0)
        predictions.append(Prediction(id, mean, sample.vessel, sample.fov))
    result = evaluate_predictions(predictions, protocol)
    return {"dataset": reader.name, "split": split, "ensemble": [str(f) for f in folders], **result}
