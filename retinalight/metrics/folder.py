"""Score a folder of saved predictions (any method's) against a dataset split: `evaluate --pred-dir`."""

from __future__ import annotations

from pathlib import Path

from retinalight.data.datasets import RetinaDataset
from retinalight.data.io import read_grey
from retinalight.errors import DataFileError
from retinalight.metrics.segmentation import Prediction, evaluate_predictions

EXTENSIONS = (".png", ".gif", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def find_predictions(pred_dir: str | Path, ids: list[str]) -> dict[str, Path]:
    """{id: file} for every id; a missing, duplicated or unexpected file is an error naming it."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataFileError(f"{pred_dir}: prediction folder not found")
    found: dict[str, Path] = {}
    for path in sorted(pred_dir.iterdir()):
        if path.suffix.lower() not in EXTENSIONS or path.name.startswith("."):
            continue
        if path.stem not in ids:
            raise DataFileError(f"{path}: unexpected prediction (no test image with id {path.stem!r})")
        if path.stem in found:
            raise DataFileError(f"{path}: second prediction for id {path.stem!r} (also {found[path.stem].name})")
        found[path.stem] = path
    missing = [i for i in ids if i not in found]
    if missing:
        raise DataFileError(
            f"{pred_dir}: no prediction for {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} (expected <id>.png)"
        )
    return found


def load_predictions(pred_dir: str | Path, reader: RetinaDataset, split: str) -> list[Prediction]:
    """Read each prediction as 8-bit grey (probability x 255) and pair it with its ground truth."""
    ids = reader.ids(split)
    files = find_predictions(pred_dir, ids)
    predictions = []
    for id in ids:
        sample = reader.load(id)
        grey = read_grey(files[id])
        if grey.shape != sample.vessel.shape:
            raise DataFileError(
                f"{files[id]}: prediction is {grey.shape[1]}x{grey.shape[0]}, image {id} is {sample.vessel.shape[1]}x{sample.vessel.shape[0]}"
            )
        predictions.append(Prediction(id, grey.astype("float32") / 255.0, sample.vessel, sample.fov))
    return predictions


def evaluate_folder(pred_dir: str | Path, reader: RetinaDataset, split: str = "test", protocol: str = "fov") -> dict:
    """Pooled and per-image metrics of the predictions in `pred_dir` (see `evaluate_predictions`)."""
    result = evaluate_predictions(load_predictions(pred_dir, reader, split), protocol)
    return {"dataset": reader.name, "split": split, **result}
