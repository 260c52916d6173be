"""Run experiments: train and test every arm x seed into its run folder (`retinalight.rundirs`), resumable.

Only rank 0 writes outside Lightning; folder names are deterministic, so all DDP ranks agree on them.
"""

from __future__ import annotations

import errno
import json
import os
import time
import traceback
from pathlib import Path

import lightning as L
import torch
import yaml

from retinalight.config import LOGGERS
from retinalight.data.datamodules import for_dataset
from retinalight.data.io import resolve_data_root, write_grey
from retinalight.errors import ConfigError, RetinalightError
from retinalight.experiments import Experiment, RunConfig
from retinalight.hardware import denormals_flushed, resolve_cudnn_benchmark, speed_class
from retinalight.inference import predict_samples
from retinalight.metrics.segmentation import METRICS, evaluate_predictions
from retinalight.models import count_parameters
from retinalight.provenance import provenance
from retinalight.rundirs import (
    check_identity,
    clear_run,
    evaluation_dir,
    evaluation_name,
    interruption_checkpoints,
    is_complete,
    latest_interruption_checkpoint,
    run_dir,
    run_lock,
    write_json,
    write_per_image,
)
from retinalight.training import interruption
from retinalight.training.callbacks import TimeToQuality
from retinalight.training.gan import GANModule
from retinalight.training.interruption import Interruption
from retinalight.training.segmentation import SegmentationModule

UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)  # the runs folder cannot take a write


def make_datamodule(config: RunConfig, data_root: str | None = None):
    data = config.data
    datamodule = for_dataset(data.dataset)(resolve_data_root(data_root or data.data_root), config=data, seed=config.seed)
    datamodule.reader.require_files()  # before the Trainer exists: a missing or corrupt file is one line, nothing trained
    return datamodule


def make_module(config: RunConfig, fov_reference: dict | None = None) -> SegmentationModule:
    """The LightningModule the config names (`module: segmentation | gan`), built from plain dicts;
    `fov_reference` (the datamodule's) is kept in its checkpoint for scale normalisation elsewhere."""
    kwargs = {
        "model": {"name": config.model.name, "kwargs": config.model.kwargs},
        "loss": vars(config.loss),
        "optimizer": vars(config.optimizer),
        "evaluation": vars(config.evaluation),
        "preprocess": config.data.preprocess,
        "resize": config.data.resize,
        "fov_diameter": config.data.fov_diameter,
        "fov_reference": fov_reference,
        "seed": config.seed,
        "channels_last": config.trainer.channels_last,
        "compile": config.trainer.compile,
    }
    if config.module == "gan":
        return GANModule(**kwargs, gan=vars(config.gan))
    return SegmentationModule(**kwargs)


def make_strategy(config: RunConfig):
    """trainer.strategy, except that a GAN under DDP finds unused parameters: each of its backward passes
    reaches only one of its two networks."""
    strategy = config.trainer.strategy
    if config.module == "gan" and strategy == "ddp":
        return "ddp_find_unused_parameters_true"
    return strategy


def slurm_plugins() -> list:
    """Under SLURM, Lightning's environment without its own SIGUSR1 requeue (`Interruption` does it at a batch boundary)."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def make_loggers(config: RunConfig, folder: Path, logger: str) -> list:
    from lightning.pytorch.loggers import CSVLogger

    if logger not in LOGGERS:
        raise ConfigError(f"--logger {logger!r}: choose from {', '.join(LOGGERS)}")
    loggers = [CSVLogger(folder, name="logs", version="")] if logger != "none" else []
    if logger == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        offline = os.environ.get("WANDB_MODE") == "offline" or not (
            os.environ.get("WANDB_API_KEY") or Path("~/.netrc").expanduser().is_file()
        )
        loggers.append(
            WandbLogger(
                project=config.logger.project,
                entity=config.logger.entity,
                tags=config.logger.tags,
                group=config.experiment,
                job_type=config.arm,
                name=f"{config.arm}-seed{config.seed}",
                save_dir=str(folder),
                offline=offline,
                config=config.to_dict(),
            )
        )
    return loggers


def fit_run(
    config: RunConfig, folder: Path, resume: bool = False, logger: str = "csv", data_root: str | None = None, callbacks: list | None = None
) -> dict | None:
    """Train, then test one arm x seed; returns its metrics (None on ranks other than 0).

    A run whose training finished (`trained.json`) but whose testing was interrupted is only tested."""
    from lightning.pytorch.utilities import rank_zero_only

    folder.mkdir(parents=True, exist_ok=True)
    with run_lock(folder, rank_zero_only.rank):
        datamodule = make_datamodule(config, data_root)
        if (folder / "trained.json").is_file():
            trained = json.loads((folder / "trained.json").read_text())
            module, loggers, device = tested_module(config, datamodule, folder), make_loggers(config, folder, logger), None
        else:
            trained, module, loggers, device = train_run(config, folder, datamodule, resume, logger, callbacks)
        if rank_zero_only.rank != 0:
            return None
        what = f"{config.arm} seed {config.seed}"
        interruption.check(f"after training {what}, before testing it")
        # tested in fp32 and the default memory format: exactly what `evaluate --ckpt` and `predict` compute
        model = module.model.to(device or tested_device(config), memory_format=torch.contiguous_format)
        metrics = test_run(model, datamodule.test_samples(), config, folder, fov_diameter=config.data.fov_diameter)
        params, buffers = count_parameters(module.model)
        summary = {
            "experiment": config.experiment,
            "arm": config.arm,
            "seed": config.seed,
            "config_hash": config.config_hash(),
            "profile": config.profile,
            "overrides": config.overrides,
            "model": config.model.name,
            "parameters": params,
            "buffers": buffers,
            **trained,
            "tested_checkpoint": config.evaluation.test_checkpoint,
            **provenance(),
            "protocols": metrics,
        }
        write_json(folder / "metrics.json", summary)
        for spent in [*interruption_checkpoints(folder), folder / "trained.json"]:  # the run is complete
            spent.unlink()
        log_test_metrics(loggers, summary)
        for test in pending_tests(config, folder, data_root, print):
            log_test_metrics(loggers, test_again(model, datamodule, config, folder, summary, test, data_root), f"{test[0]}/")
        finish_loggers(loggers)
        return summary


def selects_checkpoint(config: RunConfig, datamodule) -> bool:
    """Whether validation picks best.ckpt: a curve on the test images never selects a checkpoint."""
    return datamodule.has_validation and config.data.val_mode != "test"


def make_trainer(config: RunConfig, folder: Path, datamodule, logger: str, callbacks: list) -> L.Trainer:
    """The run's Trainer with `callbacks`, last.ckpt after every epoch (what --resume continues from;
    Lightning's save_last only refreshes it when another checkpoint is written) and best.ckpt when
    validation selects."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    ckpt_dir = folder / "checkpoints"
    checkpoints = [ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_on_train_epoch_end=True, enable_version_counter=False)]
    if selects_checkpoint(config, datamodule):
        checkpoints.append(
            ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=config.evaluation.monitor, mode="max", enable_version_counter=False)
        )
    t = config.trainer
    return L.Trainer(
        default_root_dir=folder,
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=make_strategy(config),
        num_nodes=t.num_nodes,
        sync_batchnorm=t.sync_batchnorm,
        precision=t.precision,
        deterministic=t.deterministic,
        benchmark=resolve_cudnn_benchmark(speed_class(t.accelerator), t.deterministic),
        log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        limit_val_batches=1.0 if datamodule.has_validation else 0,
        callbacks=[*callbacks, *checkpoints],  # Lightning runs checkpoints last: the clock pauses before last.ckpt stores it
        plugins=slurm_plugins(),
        logger=make_loggers(config, folder, logger) or False,
        use_distributed_sampler=False,  # EpochSampler shards by rank itself
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )


def train_run(config: RunConfig, folder: Path, datamodule, resume: bool, logger: str, callbacks: list | None):
    """Fit one run (continuing it from a signal's checkpoint, or from last.ckpt with `resume`); writes
    `trained.json` and returns (its content, the module holding the weights to test, loggers, device)."""
    folder.mkdir(parents=True, exist_ok=True)
    last = folder / "checkpoints" / "last.ckpt"
    interrupted = latest_interruption_checkpoint(folder)  # saved at a batch boundary: continued without --resume
    if last.exists() and not resume and not interrupted:
        raise RetinalightError(f"{folder} holds an unfinished run: pass --resume to continue it or --overwrite to start again")
    L.seed_everything(config.seed, workers=True, verbose=False)
    module = make_module(config, datamodule.fov_reference)
    clock = TimeToQuality(folder / "curve.csv")
    signals = Interruption(folder, f"{config.arm} seed {config.seed}")
    trainer = make_trainer(config, folder, datamodule, logger, [clock, signals, *(callbacks or [])])
    if trainer.global_rank == 0:
        (folder / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    started = time.time()
    # the newest place to continue from: the signal's checkpoint or, with --resume, the last epoch's (a run
    # continued after a signal and then killed has a newer last.ckpt)
    candidates = [p for p in (interrupted, last if resume else None) if p is not None and p.exists()]
    ckpt_path = str(max(candidates, key=lambda p: p.stat().st_mtime)) if candidates else None
    with denormals_flushed(config.trainer.flush_denormal):  # training only: testing runs as `evaluate --ckpt` does
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    best = trainer.checkpoint_callbacks[-1].best_model_path if selects_checkpoint(config, datamodule) else ""
    if config.evaluation.test_checkpoint == "best" and best:
        module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    trained = {
        "epochs": trainer.current_epoch,
        **({"collapsed_epochs": module.collapsed_epochs} if config.module == "gan" else {}),
        "train_seconds": round(clock.train_seconds, 1),  # training only, validation excluded
        "fit_seconds": round(time.time() - started, 1),  # this process's fit, validation included
    }
    if trainer.global_rank == 0:
        write_json(folder / "trained.json", trained)  # an interrupted test then resumes from here
    return trained, module, trainer.loggers, trainer.strategy.root_device


def tested_module(config: RunConfig, datamodule, folder: Path, needed_for: str = ""):
    """A run's module with the weights its config tests (best.ckpt or last.ckpt), for a run whose training
    finished before its testing was interrupted, or a complete run tested again (`needed_for` says why)."""
    name = "best" if config.evaluation.test_checkpoint == "best" and selects_checkpoint(config, datamodule) else "last"
    path = folder / "checkpoints" / f"{name}.ckpt"
    if not path.is_file():
        why = needed_for or f"though {folder / 'trained.json'} says training finished"
        raise RetinalightError(f"{path}: missing, {why}; pass --overwrite to redo the run")
    module = make_module(config, datamodule.fov_reference)
    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
    return module


def tested_device(config: RunConfig) -> torch.device:
    """Where a run that was only tested is tested: where it trained."""
    from retinalight.hardware import inference_device

    return inference_device("cpu" if config.trainer.accelerator == "cpu" else "auto")


def log_test_metrics(loggers: list, summary: dict, evaluation: str = "") -> None:
    """Pooled test metrics and the topology means as test/<evaluation><protocol>/<metric> (test/fov/cldice,
    test/tta-flips/fov/auc, ...): a W&B sweep's metric, logged once at the end."""
    flat = {
        f"test/{evaluation}{protocol}/{k}": v
        for protocol, result in summary["protocols"].items()
        for k, v in {**result["pooled"], **result.get("topology", {}).get("mean", {})}.items()
    }
    for logger in loggers:
        logger.log_metrics(flat)


def finish_loggers(loggers: list) -> None:
    for logger in loggers:
        logger.save()
        logger.finalize("success")
        if type(logger).__name__ == "WandbLogger":  # end the W&B run: the next arm must not log into it
            logger.experiment.finish()


def test_run(model, samples, config: RunConfig, folder: Path, tta: str = "none", fov_diameter: float | None = None) -> dict:
    """Predict every test sample at its original size (under `tta`; scaled to `fov_diameter` for the
    network), save predictions/<id>.png (probability x 255) in `folder`, score them."""
    e = config.evaluation
    predictions = predict_samples(
        model,
        interruption.checked(samples, f"while testing {config.arm} seed {config.seed}"),
        config.data.pad_multiple,
        resize=config.data.resize,
        fov_diameter=fov_diameter,
        patch_size=e.patch_size,
        patch_overlap=e.patch_overlap,
        tta=tta,
    )
    for pred in predictions:
        write_grey(folder / "predictions" / f"{pred.id}.png", (pred.prob * 255).round())
    results = {p: evaluate_predictions(predictions, p, config.evaluation.threshold) for p in config.evaluation.protocols}
    write_per_image(folder / "per_image.csv", results)
    return results


def extra_evaluations(config: RunConfig) -> list[tuple[str, str | None, str]]:
    """(name, dataset or None for the run's own, tta) of every test of a run beyond its plain one
    (`retinalight.rundirs.evaluation_name`): under `evaluation.tta`, and on each of `evaluation.datasets`
    (plain: a cross-dataset table compares networks, not test-time tricks)."""
    e = config.evaluation
    tests = [(evaluation_name(e.tta), None, e.tta)] if e.tta != "none" else []
    others = [d for d in e.datasets if d != config.data.dataset]
    return tests + [(evaluation_name(dataset=d, scale=e.scale), d, "none") for d in others]


def present(dataset: str, config: RunConfig, data_root: str | None) -> bool:
    from retinalight.data.datasets import get_dataset

    return get_dataset(dataset, resolve_data_root(data_root or config.data.data_root)).path.is_dir()


def test_again(model, datamodule, config: RunConfig, folder: Path, plain: dict, test: tuple, data_root: str | None) -> dict:
    """One further test of a run's weights (`extra_evaluations`) into its own folder: the plain run's facts
    with what this test changed and its scores; metrics.json there is written last. On another dataset the
    images are prepared as the run's own (same preprocessing) and, with evaluation.scale=fov, resized to the
    FOV diameter the network trained at (`RetinaDataModule.fov_reference`)."""
    from retinalight.data.datasets import get_dataset

    name, dataset, tta = test
    fov_diameter, facts = config.data.fov_diameter, {"tta": tta}
    if dataset is None:
        samples = datamodule.test_samples()
    else:
        reader = get_dataset(dataset, resolve_data_root(data_root or config.data.data_root))
        samples = datamodule.prepared(reader.load_split("test"), resized=False)
        if config.evaluation.scale == "fov":
            fov_diameter = datamodule.fov_reference["diameter"]
        facts |= {"dataset": dataset, "scale": config.evaluation.scale, "fov_reference": datamodule.fov_reference}
    target = evaluation_dir(folder, name)
    metrics = test_run(model, samples, config, target, tta, fov_diameter)
    summary = {**plain, **facts, **provenance(), "protocols": metrics}
    write_json(target / "metrics.json", summary)
    return summary


def retest(config: RunConfig, folder: Path, plain: dict, tests: list[tuple], loggers: list, data_root: str | None, echo) -> None:
    """Further tests of a complete run (`plain`: its metrics.json), from its tested checkpoint, without
    retraining; each logged to `loggers`."""
    with run_lock(folder):
        datamodule = make_datamodule(config, data_root)
        names = ", ".join(name for name, _, _ in tests)
        module = tested_module(config, datamodule, folder, f"so the complete run cannot be tested again ({names})")
        model = module.model.to(tested_device(config), memory_format=torch.contiguous_format)
        for test in tests:
            echo(f"{config.arm} seed {config.seed}: testing again as {test[0]} (the plain test is kept)")
            log_test_metrics(loggers, test_again(model, datamodule, config, folder, plain, test, data_root), f"{test[0]}/")


def pending_tests(config: RunConfig, folder: Path, data_root: str | None, echo) -> list[tuple]:
    """`extra_evaluations` whose dataset is present (an absent one is said once and named in the summary)."""
    tests = []
    for test in extra_evaluations(config):
        if test[1] and not present(test[1], config, data_root):
            echo(f"{config.arm} seed {config.seed}: {test[1]} not found under the data root, not tested on it")
            continue
        tests.append(test)
    return tests


def reuse(config: RunConfig, folder: Path, logger: str, data_root: str | None, echo) -> str | None:
    """A complete run (rank 0): its scores to W&B when a sweep asks (one W&B run, its further tests included),
    and the further tests it lacks; a failure is one line returned, the other runs go on."""
    plain = json.loads((folder / "metrics.json").read_text())
    loggers = make_loggers(config, folder, "wandb")[1:] if logger == "wandb" else []
    log_test_metrics(loggers, plain)
    tests = [t for t in pending_tests(config, folder, data_root, echo) if not is_complete(folder, t[0])]
    try:
        if tests:
            retest(config, folder, plain, tests, loggers, data_root, echo)
    except RetinalightError as err:  # e.g. no checkpoint (committed results keep none)
        what = f"{config.arm} seed {config.seed} ({', '.join(t[0] for t in tests)})"
        echo(f"FAILED {what}: {err}")
        return f"{what}: {err}"
    finally:
        finish_loggers(loggers)
    return None


def run_or_reuse(config: RunConfig, folder: Path, resume: bool, overwrite: bool, logger: str, data_root: str | None, echo) -> str | None:
    """Reuse the run if complete, else fit it; a crash is one line returned (traceback in its error.log)."""
    from lightning.pytorch.utilities import rank_zero_only

    what = f"{config.arm} seed {config.seed}"
    if overwrite:
        clear_run(folder, rank_zero_only.rank)
    check_identity(folder, config)
    if is_complete(folder):
        echo(f"{what}: complete (same config), reusing {folder}")
        if rank_zero_only.rank == 0:
            return reuse(config, folder, logger, data_root, echo)
        return None
    try:
        result = fit_run(config, folder, resume=resume, logger=logger, data_root=data_root)
    except RetinalightError:
        raise
    except OSError as err:
        if err.errno not in UNWRITABLE:
            raise
        raise RetinalightError(
            f"{err.filename or folder}: cannot write ({err.strerror}); the run stopped, its checkpoints saved so far are kept"
        ) from None
    except Exception as err:  # keep the other runs going; the error is kept with the run
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "error.log").write_text(traceback.format_exc())
        echo(f"FAILED {what}: {type(err).__name__}: {err} (see {folder / 'error.log'})")
        return f"{what}: {type(err).__name__}: {err} (see {folder / 'error.log'})"
    if result:
        protocol = config.evaluation.protocols[0]
        pooled = result["protocols"][protocol]["pooled"]
        echo(f"{what}: " + " ".join(f"{k}={pooled[k]:.4f}" for k in METRICS) + f" ({protocol})")
    return None


def fit_experiment(
    experiment: Experiment,
    runs_root: Path,
    arms: list[str] | None = None,
    seeds: list[int] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    logger: str = "csv",
    data_root: str | None = None,
    echo=print,
) -> dict:
    """Train and test every arm x seed (complete runs are reused), then rebuild the summary from the folders.

    A run that fails is reported in one line (traceback in its folder's error.log) and the others go on."""
    from lightning.pytorch.utilities import rank_zero_only
    from tqdm.auto import tqdm

    from retinalight.summary import write_summary

    arms = arms or experiment.run_arms
    seeds = seeds if seeds is not None else experiment.seeds
    try:
        (Path(runs_root) / experiment.name).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RetinalightError(f"--runs {runs_root}: cannot create the runs folder ({err.strerror or err})") from None
    configs = [experiment.run_config(arm, seed) for arm in arms for seed in seeds]
    failures = []
    bar = tqdm(configs, desc=experiment.name, unit="run", disable=None)
    for config in bar:
        bar.set_postfix_str(f"{config.arm} seed {config.seed}")
        interruption.check(f"before {config.arm} seed {config.seed}")
        failure = run_or_reuse(config, run_dir(runs_root, config), resume, overwrite, logger, data_root, echo)
        if failure:
            failures.append(failure)
    if rank_zero_only.rank != 0:  # DDP ranks > 0 (re-launched scripts) leave the summary to rank 0
        return {"failures": failures}
    summary = write_summary(experiment, Path(runs_root), data_root)
    summary["failures"] = failures
    return summary
