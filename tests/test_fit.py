"""End to end: training, testing, run folders, resume, evaluate and predict on real data at tiny scale."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from retinalight.data.datasets import get_dataset
from retinalight.errors import DataFileError
from retinalight.evaluate import main as evaluate_main
from retinalight.experiments import load_experiment
from retinalight.fit import main as fit_main
from retinalight.inference import checkpoint_inputs, load_checkpoint, predict_samples
from retinalight.metrics.segmentation import evaluate_predictions
from retinalight.predict import main as predict_main
from retinalight.rundirs import run_dir

TINY_DRIVE = [
    "trainer.max_epochs=1",
    "data.samples_per_epoch=4",
    "data.batch_size=2",
    "data.crop_size=64",
    "data.val_mode=holdout",
    "data.val_count=1",
    "evaluation.protocols=[fov,image]",
    "data.preprocess={name: clahe, channel: green}",  # so evaluate --ckpt and predict must apply the checkpoint's preprocessing
]


def fit_tiny_sa_unet(runs, data_root) -> int:
    args = ["--exp", "ablation_drive", "--profile", "quick", "--arm", "sa_unet", "--runs", str(runs), "--data-root", str(data_root)]
    return fit_main([*args, "--set", *TINY_DRIVE])


def seed_folder(exp_dir, arm, seed=0):
    """The one run folder of `arm` and `seed` under runs/<exp>/ (its config level is named by hash)."""
    found = list(exp_dir.glob(f"{arm}/*/seed{seed}"))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def drive_run(data_root, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    assert fit_tiny_sa_unet(runs, data_root) == 0
    return runs / "ablation_drive"


def test_fit_writes_a_complete_run_folder(drive_run):
    folder = seed_folder(drive_run, "sa_unet")
    for name in ("config.yaml", "metrics.json", "per_image.csv", "checkpoints/last.ckpt", "logs/metrics.csv"):
        assert (folder / name).is_file(), name
    assert len(list((folder / "predictions").glob("*.png"))) == 20
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["parameters"] == 537_299 and set(metrics["protocols"]) == {"fov", "image"}
    assert 0 <= metrics["protocols"]["fov"]["pooled"]["auc"] <= 1 and metrics["commit"] and metrics["device"]
    summary = next(drive_run.glob("summary-quick-*.md")).read_text()
    assert "sa_unet (paper)" in summary and "0.8263" in summary and "Protocol `fov`" in summary and "profile: quick" in summary
    assert "1 seed: seed spread unknown" not in summary  # sa_unet alone: no reference arm to compare with
    data = json.loads(next(drive_run.glob("summary-quick-*.json")).read_text())
    assert data["protocols"]["image"]["arms"]["sa_unet"]["paper"]["auc"] == 0.9864 and data["overrides"] == TINY_DRIVE


def test_saved_predictions_rescore_like_the_run(drive_run, data_root, capsys):
    folder = seed_folder(drive_run, "sa_unet")
    assert evaluate_main(["--pred-dir", str(folder / "predictions"), "--format", "json", "--data-root", str(data_root)]) == 0
    rescored = json.loads(capsys.readouterr().out)["pooled"]
    recorded = json.loads((folder / "metrics.json").read_text())["protocols"]["fov"]["pooled"]
    for key in ("se", "sp", "acc", "f1", "mcc", "auc"):  # the run scores exactly the 8-bit maps it saves
        assert abs(rescored[key] - recorded[key]) < 1e-6, key


def test_evaluate_out_writes_a_run_folders_metrics_and_per_image_table(drive_run, data_root, tmp_path, capsys):
    folder = seed_folder(drive_run, "sa_unet")
    out = tmp_path / "scored"
    assert evaluate_main(["--pred-dir", str(folder / "predictions"), "--out", str(out), "--data-root", str(data_root)]) == 0
    capsys.readouterr()
    fov_rows = [line for line in (folder / "per_image.csv").read_text().splitlines() if not line.startswith("image,")]  # header + fov
    assert (out / "per_image.csv").read_text().splitlines() == fov_rows
    scored = json.loads((out / "metrics.json").read_text())["protocols"]["fov"]["pooled"]
    recorded = json.loads((folder / "metrics.json").read_text())["protocols"]["fov"]["pooled"]
    assert scored == pytest.approx(recorded, abs=1e-6)


def test_evaluate_json_matches_sklearn_to_4_decimals(drive_run, data_root, capsys):
    import numpy as np
    from sklearn.metrics import f1_score, roc_auc_score

    from retinalight.data.datasets import Drive
    from retinalight.data.io import read_grey

    folder = seed_folder(drive_run, "sa_unet") / "predictions"
    assert evaluate_main(["--pred-dir", str(folder), "--protocol", "image", "--format", "json", "--data-root", str(data_root)]) == 0
    pooled = json.loads(capsys.readouterr().out)["pooled"]
    drive = Drive(data_root)
    prob = np.concatenate([read_grey(folder / f"{i}.png").ravel() / 255 for i in drive.ids("test")])
    target = np.concatenate([drive.load(i).vessel.ravel() for i in drive.ids("test")])
    assert round(pooled["auc"], 4) == round(roc_auc_score(target, prob), 4)
    assert round(pooled["f1"], 4) == round(f1_score(target, prob > 0.5), 4)


def test_evaluate_checkpoint(drive_run, data_root, capsys):
    folder = seed_folder(drive_run, "sa_unet")
    assert evaluate_main(["--ckpt", str(folder / "checkpoints" / "last.ckpt"), "--protocol", "image", "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "protocol image" in out and out.count("\n") > 20
    ckpt = ["--ckpt", str(folder / "checkpoints" / "last.ckpt"), "--format", "json", "--data-root", str(data_root)]
    assert evaluate_main([*ckpt, "--precision", "fp32"]) == 0
    pooled = json.loads(capsys.readouterr().out)["pooled"]
    recorded = json.loads((folder / "metrics.json").read_text())["protocols"]["fov"]["pooled"]
    for key in ("se", "sp", "acc", "f1", "mcc", "auc"):  # in fp32 the tested checkpoint re-scores exactly like the run
        assert abs(pooled[key] - recorded[key]) < 1e-6, key


def test_complete_runs_are_reused(drive_run, data_root, capsys):
    before = (seed_folder(drive_run, "sa_unet") / "metrics.json").read_text()
    assert fit_tiny_sa_unet(drive_run.parent, data_root) == 0
    assert "complete (same config), reusing" in capsys.readouterr().out
    assert (seed_folder(drive_run, "sa_unet") / "metrics.json").read_text() == before


def test_tta_is_scored_beside_the_plain_test_without_retraining(drive_run, data_root, tmp_path, capsys):
    folder = seed_folder(drive_run, "sa_unet")
    plain = (folder / "metrics.json").read_text()
    args = ["--exp", "ablation_drive", "--profile", "quick", "--arm", "sa_unet", "--data-root", str(data_root)]
    tta = ["--set", *TINY_DRIVE, "evaluation.tta=flips"]
    assert fit_main([*args, "--runs", str(drive_run.parent), *tta]) == 0
    assert "testing again as tta-flips (the plain test is kept)" in capsys.readouterr().out
    assert (folder / "metrics.json").read_text() == plain  # never overwritten by the TTA score
    scored = json.loads((folder / "tta-flips" / "metrics.json").read_text())
    assert scored["tta"] == "flips" and scored["config_hash"] == json.loads(plain)["config_hash"]
    assert len(list((folder / "tta-flips" / "predictions").glob("*.png"))) == 20 and (folder / "tta-flips" / "per_image.csv").is_file()
    ckpt = ["--ckpt", str(folder / "checkpoints" / "last.ckpt"), "--format", "json", "--precision", "fp32", "--data-root", str(data_root)]
    assert evaluate_main([*ckpt, "--tta", "flips"]) == 0
    pooled = json.loads(capsys.readouterr().out)["pooled"]
    for key in ("f1", "auc"):  # the run's TTA test is `evaluate --ckpt --tta flips`
        assert abs(pooled[key] - scored["protocols"]["fov"]["pooled"][key]) < 1e-6, key
    table = next(p for p in drive_run.glob("summary-quick-*.md") if "tta=flips" in p.read_text()).read_text()
    assert "| sa_unet (TTA flips) | 1 |" in table and "vs sa_unet without TTA: F1" in table
    assert fit_main([*args, "--runs", str(drive_run.parent), *tta]) == 0
    assert "testing again" not in capsys.readouterr().out  # both tests complete: reused
    # a complete run without its checkpoint (as committed results keep them) cannot be re-tested: one line
    import shutil

    copy = tmp_path / "runs" / folder.relative_to(drive_run.parent)
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("checkpoints", "tta-flips"))
    assert fit_main([*args, "--runs", str(tmp_path / "runs"), *tta]) == 1
    assert "last.ckpt: missing, so the complete run cannot be tested again (tta-flips)" in capsys.readouterr().out
    assert not (copy / "tta-flips").exists() and (copy / "metrics.json").read_text() == plain


def test_cross_dataset_tests_scale_to_the_training_fov_and_match_evaluate(drive_run, data_root, capsys):
    folder = seed_folder(drive_run, "sa_unet")
    args = [
        "--exp",
        "ablation_drive",
        "--profile",
        "quick",
        "--arm",
        "sa_unet",
        "--data-root",
        str(data_root),
        "--runs",
        str(drive_run.parent),
    ]
    assert fit_main([*args, "--set", *TINY_DRIVE, "evaluation.datasets=[drive,chase_db1,stare]"]) == 0
    out = capsys.readouterr().out
    assert "testing again as on-chase_db1" in out and "stare not found under the data root, not tested on it" in out
    scored = json.loads((folder / "on-chase_db1" / "metrics.json").read_text())
    assert (
        scored["dataset"] == "chase_db1" and scored["scale"] == "fov" and scored["fov_reference"] == {"dataset": "drive", "diameter": 540.0}
    )
    assert len(list((folder / "on-chase_db1" / "predictions").glob("*.png"))) == 8  # CHASE_DB1's test split
    table = next(p for p in drive_run.glob("summary-quick-*.md") if "datasets=[drive,chase_db1,stare]" in p.read_text()).read_text()
    assert "## Cross-dataset, protocol `fov`: trained on drive" in table and "| sa_unet | drive | chase_db1 | 1 |" in table
    assert "Not tested (not under the data root, or not run yet): stare." in table
    # evaluate --ckpt on another dataset takes the same path: scale normalised to the checkpoint's training FOV
    ckpt = ["--ckpt", str(folder / "checkpoints" / "last.ckpt"), "--format", "json", "--precision", "fp32", "--data-root", str(data_root)]
    assert evaluate_main([*ckpt, "--dataset", "chase_db1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["scale"] == "fov" and result["fov_diameter"] == 540.0
    assert abs(result["pooled"]["auc"] - scored["protocols"]["fov"]["pooled"]["auc"]) < 1e-6


def test_predict_on_a_chase_image(drive_run, data_root, tmp_path):
    ckpt = seed_folder(drive_run, "sa_unet") / "checkpoints" / "last.ckpt"
    image = data_root / "CHASE_DB1" / "Image_12L.jpg"
    assert predict_main(["--ckpt", str(ckpt), "--input", str(image), "--out", str(tmp_path)]) == 0
    from PIL import Image

    for suffix in ("prob", "vessels", "overlay", "fov"):
        with Image.open(tmp_path / f"Image_12L_{suffix}.png") as img:
            assert img.size == (999, 960)


def test_predict_keeps_going_past_bad_files_and_names_each(drive_run, data_root, tmp_path, capsys):
    import shutil

    ckpt = seed_folder(drive_run, "sa_unet") / "checkpoints" / "last.ckpt"
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(data_root / "DRIVE" / "test" / "images" / "01_test.tif", photos / "a_good.tif")
    shutil.copy(data_root / "DRIVE" / "test" / "images" / "02_test.tif", photos / "z_good.tif")
    jpeg = (data_root / "CHASE_DB1" / "Image_12L.jpg").read_bytes()
    (photos / "b_truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (photos / "c_random.jpg").write_bytes(bytes(range(256)) * 40)
    (photos / "d_empty.png").write_bytes(b"")
    assert predict_main(["--ckpt", str(ckpt), "--input", str(photos), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split(photos.name + "/")[1].split(":")[0] for line in err[:3]] == ["b_truncated.jpg", "c_random.jpg", "d_empty.png"]
    assert err[-1] == "error: 3 of 5 images could not be read (listed above)"
    assert all(
        (tmp_path / "out" / f"{name}_{kind}.png").is_file() for name in ("a_good", "z_good") for kind in ("prob", "vessels", "overlay")
    )


def test_evaluate_reads_16_bit_maps_and_refuses_nan(drive_run, data_root, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from retinalight.data.io import read_grey

    eight = seed_folder(drive_run, "sa_unet") / "predictions"
    sixteen = tmp_path / "sixteen"
    sixteen.mkdir()
    for path in eight.glob("*.png"):  # x 257: the same probabilities on the 16-bit range
        Image.fromarray(read_grey(path).astype(np.uint16) * 257).save(sixteen / path.name)
    scores = []
    for folder in (eight, sixteen):
        assert evaluate_main(["--pred-dir", str(folder), "--format", "json", "--data-root", str(data_root)]) == 0
        scores.append(json.loads(capsys.readouterr().out)["pooled"])
    assert scores[0] == pytest.approx(scores[1], abs=1e-7)
    prob = read_grey(eight / "01.png").astype(np.float32) / 255
    prob[10, 10] = np.nan
    (sixteen / "01.png").unlink()
    Image.fromarray(prob, mode="F").save(sixteen / "01.tif")
    with pytest.raises(DataFileError, match="01.tif: 1 NaN or infinite values"):
        evaluate_main(["--pred-dir", str(sixteen), "--data-root", str(data_root)])


def test_auto_precision_and_layout_are_resolved_into_the_run(tmp_path):
    """`auto` precision and channels_last train end to end, and config.yaml records what they resolved to here
    (bf16-mixed only where this CPU has native bf16: no test trains under emulated bf16)."""
    import yaml

    from retinalight.hardware import cpu_native_bf16

    args = ["--exp", "smoke_synthetic", "--arm", "sa_unet", "--runs", str(tmp_path), "--logger", "none"]
    assert fit_main([*args, "--set", "trainer.max_epochs=1", "trainer.precision=auto", "trainer.channels_last=auto"]) == 0
    folder = seed_folder(tmp_path / "smoke_synthetic", "sa_unet")
    trainer = yaml.safe_load((folder / "config.yaml").read_text())["trainer"]
    assert trainer["precision"] == ("bf16-mixed" if cpu_native_bf16() else "32-true") and trainer["channels_last"] is True
    assert (folder / "metrics.json").is_file()


@pytest.mark.slow
def test_summary_has_second_observer_row_when_annotations_exist(data_root, tmp_path):
    import shutil

    from retinalight.summary import build_summary, format_markdown

    root = tmp_path / "data"
    shutil.copytree(data_root / "DRIVE", root / "DRIVE")
    shutil.copytree(root / "DRIVE" / "test" / "1st_manual", root / "DRIVE" / "test" / "2nd_manual")
    for path in (root / "DRIVE" / "test" / "2nd_manual").iterdir():
        path.rename(path.with_name(path.name.replace("manual1", "manual2")))
    runs = tmp_path / "runs"
    assert (
        fit_main(
            [
                "--exp",
                "ablation_drive",
                "--arm",
                "unet",
                "--seeds",
                "0",
                "1",
                "--runs",
                str(runs),
                "--data-root",
                str(root),
                "--logger",
                "none",
                "--set",
                *TINY_DRIVE,
            ]
        )
        == 0
    )
    experiment = load_experiment("ablation_drive", overrides=TINY_DRIVE)
    summary = build_summary(experiment, runs, str(root))
    assert summary["protocols"]["fov"]["second_observer"]["f1"] == 1.0  # a copy of the first observer
    text = format_markdown(summary)
    assert "2nd human observer" in text
    # two seeds: the ensemble row scores the mean of their saved maps, and the topology table has every row
    from retinalight.data.datasets import Drive
    from retinalight.data.io import read_probability
    from retinalight.metrics import Prediction, evaluate_predictions
    from retinalight.rundirs import config_dir

    seeds = [config_dir(runs, experiment.run_config("unet", 0)) / f"seed{k}" / "predictions" for k in (0, 1)]
    reader = Drive(root)
    mean_maps = [
        Prediction(i, np.mean([read_probability(s / f"{i}.png") for s in seeds], axis=0), reader.load(i).vessel, reader.load(i).fov)
        for i in reader.ids("test")
    ]
    ensemble = summary["protocols"]["image"]["ensembles"]["unet"]
    assert ensemble["seeds"] == 2 and ensemble["pooled"] == evaluate_predictions(mean_maps, "image")["pooled"]
    assert "| unet (ensemble of 2) | 2 |" in text and text.count("(ensemble of 2)") == 4  # 2 protocols x (pixels, topology)
    assert summary["protocols"]["fov"]["topology"]["unet"]["seeds"] == 2


def test_wandb_offline_logging(tmp_path):
    """Two arms in one invocation: two W&B runs, each ending with its own test metrics (a sweep's metric)."""
    assert fit_main(["--exp", "smoke_synthetic", "--runs", str(tmp_path), "--logger", "wandb", "--set", "trainer.max_epochs=1"]) == 0
    for arm in ("unet", "sa_unet"):
        folder = seed_folder(tmp_path / "smoke_synthetic", arm)
        assert (folder / "logs" / "metrics.csv").is_file()
        (records,) = list((folder / "wandb").glob("offline-run-*/run-*.wandb"))  # offline, a run's records
        assert b"test/fov/auc" in records.read_bytes() and b"test/image/f1" in records.read_bytes()
    # a sweep run that finds its run complete still reports the stored metrics to W&B
    assert (
        fit_main(
            ["--exp", "smoke_synthetic", "--arm", "unet", "--runs", str(tmp_path), "--logger", "wandb", "--set", "trainer.max_epochs=1"]
        )
        == 0
    )
    runs = list((seed_folder(tmp_path / "smoke_synthetic", "unet") / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 2 and all(b"test/fov/auc" in r.read_bytes() for r in runs)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--exp", "ablation_driv"], "did you mean ablation_drive"),
        (["--exp", "ablation_drive", "--set", "trainer.max_epoch=1"], "did you mean max_epochs"),
        (["--exp", "ablation_drive", "--arm", "sa_unte"], "unknown arm 'sa_unte'"),
    ],
)
def test_fit_bad_input_is_one_line(args, message, tmp_path, capsys):
    assert _fit_exit_code([*args, "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def _fit_exit_code(argv: list[str]) -> int:
    """`python -m retinalight.fit ARGV`'s exit status, run in this process (stderr as the command prints it)."""
    from retinalight.cli import run_main

    with pytest.raises(SystemExit) as exit:
        run_main(fit_main, argv)
    return exit.value.code


@pytest.mark.parametrize(
    "args, key",
    [
        (["seeds=[0, 1"], "seeds="),
        (["--set", "arm=[unet"], "arm="),
        (["arm=[]"], "arm="),
        (["seeds=[a]"], "seeds="),
        (["seeds=!!python/object/apply:os.system [echo hacked]"], "seeds="),  # never executed: safe YAML
        (["profile="], "profile="),
        (["exp="], "exp="),
        (["runs="], "runs="),
        (["logger=tensorboard"], "logger="),
    ],
)
def test_bare_options_with_a_malformed_value_are_one_line(args, key, capsys):
    """The key=value forms a sweep agent passes: one line naming the key, exit 2."""
    assert _fit_exit_code(["--exp", "smoke_synthetic", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {key}") and err.count("\n") == 1, err
    assert "hacked" not in capsys.readouterr().out


def test_fit_on_missing_data_says_where_to_get_it(tmp_path, capsys):
    assert _fit_exit_code(["--exp", "ablation_drive", "--runs", str(tmp_path), "--data-root", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "drive.grand-challenge.org" in err and err.count("\n") == 1


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    """DDP on CPU (gloo, 2 processes, the subprocess launcher a cluster uses): every run completes once, each
    rank draws half of the epoch's samples, and only rank 0 writes results."""
    overrides = ["trainer.max_epochs=2", "trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "retinalight.fit",
            "--exp",
            "smoke_synthetic",
            "--runs",
            str(tmp_path),
            "--logger",
            "csv",
            "--set",
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("summary: ") == 1
    for arm in ("unet", "sa_unet"):
        folder = seed_folder(tmp_path / "smoke_synthetic", arm)
        assert json.loads((folder / "metrics.json").read_text())["protocols"]["fov"]["pooled"]
        ckpt = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["global_step"] == 4  # 16 samples / batch 4 / 2 ranks = 2 steps per epoch, 2 epochs
        # test metrics are exact: one process scoring the same checkpoint on every test image agrees to 1e-6
        model, hparams = load_checkpoint(folder / "checkpoints" / "last.ckpt")
        reader = get_dataset("synthetic", tmp_path, count=16, size=64)
        single = evaluate_predictions(predict_samples(model, reader.load_split("test"), **checkpoint_inputs(hparams)), "fov")
        recorded = json.loads((folder / "metrics.json").read_text())["protocols"]["fov"]
        assert [r["id"] for r in recorded["per_image"]] == [r["id"] for r in single["per_image"]]  # each image once
        for key, value in single["pooled"].items():
            assert abs(recorded["pooled"][key] - value) < 1e-6, key


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["patch", "image"])
def test_ddp_two_cpu_processes_gan(tmp_path, scope):
    """The GAN under DDP, with either discriminator: each backward reaches one of two networks
    (find_unused_parameters), two optimizer steps per batch, and testing on rank 0 only."""
    overrides = ["trainer.max_epochs=2", "trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]
    if scope == "image":
        overrides += ["arms.gan.gan.discriminator_scope=image", "data.resize=64", "evaluation.patch_size=32"]
    command = [sys.executable, "-m", "retinalight.fit", "--exp", "smoke_synthetic", "--arm", "gan", "--runs", str(tmp_path)]
    result = subprocess.run([*command, "--logger", "none", "--set", *overrides], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    folder = seed_folder(tmp_path / "smoke_synthetic", "gan")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["protocols"]["fov"]["pooled"] and "collapsed_epochs" in metrics
    ckpt = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 8  # 2 batches per epoch per rank, 2 epochs, a D and a G step per batch
    assert any(k.startswith("discriminator.") for k in ckpt["state_dict"])


# ---- run identity: a folder is its config -----------------------------------------------------------------


def _smoke(runs, *overrides, profile="paper"):
    return fit_main(
        ["--exp", "smoke_synthetic", "--arm", "unet", "--runs", str(runs), "--logger", "none", "--profile", profile, *overrides]
    )


def test_a_changed_config_never_reuses_a_run(tmp_path, capsys):
    assert _smoke(tmp_path) == 0
    first = capsys.readouterr().out
    assert _smoke(tmp_path, "--set", "trainer.max_epochs=3", "optimizer.lr=0.01") == 0
    second = capsys.readouterr().out
    assert "reusing" not in second
    folders = sorted((tmp_path / "smoke_synthetic" / "unet").glob("*/seed0/metrics.json"))
    assert len(folders) == 2
    epochs = sorted(json.loads(f.read_text())["epochs"] for f in folders)
    assert epochs == [2, 3]
    # each summary shows its own run: the table printed after the second command is not the first one's
    assert first.split("| unet | 1 |")[1].split("\n")[0] != second.split("| unet | 1 |")[1].split("\n")[0]
    assert "overrides: trainer.max_epochs=3 optimizer.lr=0.01" in second
    assert _smoke(tmp_path, "--set", "trainer.max_epochs=3", "optimizer.lr=0.01") == 0  # the same config is reused
    assert "complete (same config), reusing" in capsys.readouterr().out


def test_a_sweep_over_three_learning_rates_gives_three_runs(tmp_path, capsys):
    for lr in ("0.001", "0.003", "0.01"):
        assert _smoke(tmp_path, "trainer.max_epochs=1", f"optimizer.lr={lr}") == 0  # the W&B agent's bare form
    assert "reusing" not in capsys.readouterr().out
    runs = [json.loads(f.read_text()) for f in (tmp_path / "smoke_synthetic" / "unet").glob("*/seed0/metrics.json")]
    assert len(runs) == 3 and len({r["config_hash"] for r in runs}) == 3
    assert len(list((tmp_path / "smoke_synthetic").glob("summary-paper-*.md"))) == 3


def test_a_profile_change_is_a_different_run(tmp_path):
    exp = load_experiment("ablation_drive", "quick")
    assert run_dir(tmp_path, exp.run_config("sa_unet", 0)) != run_dir(tmp_path, load_experiment("ablation_drive").run_config("sa_unet", 0))
    assert run_dir(tmp_path, exp.run_config("sa_unet", 0)).parent.name.startswith("quick-")
    # the same resolved config, asked for again, lands in the same folder; the seed is the last level
    again = load_experiment("ablation_drive", "quick").run_config("sa_unet", 1)
    assert run_dir(tmp_path, again).parent == run_dir(tmp_path, exp.run_config("sa_unet", 0)).parent


def test_a_model_fix_gets_new_run_folders(tmp_path, monkeypatch):
    from retinalight.models import registry

    sa_unet = load_experiment("ablation_drive", "quick").run_config("sa_unet", 0)
    gan = load_experiment("retinagan_drive", "quick").run_config("gan", 0)
    before = run_dir(tmp_path, sa_unet), run_dir(tmp_path, gan)
    assert "revision" not in sa_unet.identity()["model"]  # revision 0: folders named before revisions existed stay valid
    monkeypatch.setitem(registry._REVISIONS, "sa_unet", 1)
    monkeypatch.setitem(registry._REVISIONS, "patch_discriminator", 2)
    assert sa_unet.identity()["model"]["revision"] == 1 and gan.identity()["gan"]["discriminator"]["revision"] == 2
    assert run_dir(tmp_path, sa_unet) != before[0] and run_dir(tmp_path, gan) != before[1]


def test_a_folder_holding_another_config_is_refused_with_the_differing_keys(tmp_path):
    import yaml

    from retinalight.errors import RetinalightError
    from retinalight.rundirs import check_identity

    config = load_experiment("smoke_synthetic").run_config("unet", 0)
    folder = run_dir(tmp_path, config)
    folder.mkdir(parents=True)
    stored = config.to_dict()
    stored["optimizer"]["lr"] = 0.5
    (folder / "config.yaml").write_text(yaml.safe_dump(stored))
    with pytest.raises(RetinalightError, match=r"optimizer.lr: 0.5 -> 0.003"):
        check_identity(folder, config)


def test_curve_records_validation_against_training_seconds(tmp_path):
    import csv

    assert _smoke(tmp_path, "trainer.max_epochs=2") == 0
    rows = list(csv.DictReader((seed_folder(tmp_path / "smoke_synthetic", "unet") / "curve.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert 0 < float(rows[0]["train_seconds"]) <= float(rows[1]["train_seconds"]) and 0 <= float(rows[1]["val/auc"]) <= 1


def test_unwritable_runs_folder_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert _fit_exit_code(["--exp", "smoke_synthetic", "--runs", str(blocker / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --runs") and err.count("\n") == 1


def test_a_drive_without_test_expert_maps_stops_before_training_and_import_says_so(data_root, tmp_path, capsys):
    """DRIVE as its challenge site serves it today (no test/1st_manual): `data import` names the missing part,
    and `fit` stops in one line before its first step instead of after training; a corrupt image likewise."""
    import zipfile

    from retinalight.data.__main__ import main as data_main

    archive = tmp_path / "drive.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((data_root / "DRIVE").rglob("*")):
            relative = path.relative_to(data_root)
            if path.is_file() and relative.parts[1:3] != ("test", "1st_manual"):
                zf.write(path, relative.as_posix())
    root = tmp_path / "data"
    assert data_main(["import", str(archive), "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "DRIVE: still missing test expert maps (20): test scores do not work" in out
    runs = tmp_path / "runs"
    args = ["--exp", "ablation_drive", "--profile", "quick", "--arm", "unet", "--runs", str(runs), "--data-root", str(root)]
    assert _fit_exit_code(args) == 2
    captured = capsys.readouterr()
    assert "lacks 20 test expert maps" in captured.err and "nothing was trained" in captured.err and captured.err.count("\n") == 1
    assert not list(runs.rglob("*.ckpt"))
    (root / "DRIVE" / "test" / "1st_manual").mkdir()
    for path in (data_root / "DRIVE" / "test" / "1st_manual").iterdir():
        (root / "DRIVE" / "test" / "1st_manual" / path.name).write_bytes(path.read_bytes())
    (root / "DRIVE" / "training" / "images" / "23_training.tif").write_bytes(b"not an image")
    assert _fit_exit_code(args) == 2
    err = capsys.readouterr().err
    assert "23_training.tif" in err and err.count("\n") == 1
