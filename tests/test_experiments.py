from pathlib import Path

import pytest

from retinalight.errors import ConfigError, UnknownNameError
from retinalight.experiments import load_experiment

PAPER_ARMS = ["unet", "unet_sa", "sd_unet", "backbone", "sa_unet"]


def test_ablation_drive_has_the_paper_arms_and_hyperparameters():
    exp = load_experiment("ablation_drive")
    assert list(exp.arms) == [*PAPER_ARMS, "unet23"] and exp.run_arms == PAPER_ARMS  # the sixth arm by --arm unet23
    run = exp.run_config("sa_unet", 0)
    assert run.model.kwargs == {"drop_rate": 0.18, "block_size": 7}
    assert (run.data.batch_size, run.trainer.max_epochs, run.optimizer.lr, run.optimizer.milestones) == (8, 150, 0.001, [100])
    assert exp.paper_numbers("sa_unet")["f1"] == 0.8263 and exp.paper["protocol"] == "image"


def test_ablation_chase_uses_its_own_drop_rate_and_batch():
    run = load_experiment("ablation_chase").run_config("backbone", 1)
    assert run.model.kwargs["drop_rate"] == 0.13 and run.data.batch_size == 4 and run.data.dataset == "chase_db1" and run.seed == 1


def test_quick_profile_and_overrides():
    exp = load_experiment("ablation_drive", "quick", ["trainer.max_epochs=3", "arms.sa_unet.model.drop_rate=0.1", "optimizer.lr=1e-2"])
    assert exp.run_arms == PAPER_ARMS
    run = exp.run_config("sa_unet", 0)
    assert run.trainer.max_epochs == 3 and run.model.kwargs["drop_rate"] == 0.1 and run.data.crop_size == 128
    assert run.optimizer.lr == 0.01


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trainer.max_epoch=3"], "unknown key 'trainer.max_epoch' (did you mean max_epochs?)"),
        (["trainer.max_epochs=many"], "'trainer.max_epochs' must be int"),
        (["arms.sa_unet.model.name=sa_unte"], "did you mean sa_unet"),
        (["arms.sa_unet.model.droprate=0.1"], "unknown key 'arms.sa_unet.model.droprate' (did you mean drop_rate?)"),
        (["arms.sa_unte.model.drop_rate=0.1"], "unknown arm 'sa_unte' (did you mean sa_unet"),
        (["dta.batch_size=2"], "unknown key 'dta' (did you mean data?)"),
        (["nonsense"], "is not key=value"),
        (["evaluation.protocols=[fov,imag]"], "'arms.unet.evaluation.protocols' = 'imag': choose from fov, image (did you mean image?)"),
        (["evaluation.test_checkpoint=best_val"], "choose from last, best"),
    ],
)
def test_config_errors_name_file_key_and_nearest(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_experiment("ablation_drive", overrides=overrides)
    assert message in str(err.value) and "ablation_drive.yaml" in str(err.value)


def test_unknown_experiment_and_profile():
    with pytest.raises(UnknownNameError, match="did you mean ablation_drive"):
        load_experiment("ablation_driv")
    with pytest.raises(UnknownNameError, match="unknown profile 'quik'"):
        load_experiment("ablation_drive", "quik")


def test_bad_yaml_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("arms: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_experiment(str(bad))
    bad.write_text("arms:\n  x: {model: {name: unet}}\ndata: {batch_size: two}\n")
    with pytest.raises(ConfigError, match="'data.batch_size' must be int"):
        load_experiment(str(bad))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["evaluation.threshold=7"], "'arms.unet.evaluation.threshold' = 7: must be a probability"),
        (["data.batch_size=-3"], "'arms.unet.data.batch_size' = -3: must be an integer >= 1"),
        (["data.samples_per_epoch=0"], "samples_per_epoch' = 0"),
        (["trainer.max_epochs=0"], "max_epochs' = 0"),
        (["data.crop_size=100"], "multiple of 16"),
        (["optimizer.lr=0"], "optimizer.lr' = 0"),
        (["optimizer.lr=-1e-3"], "optimizer.lr' = -0.001"),
        (["optimizer.gamma=2"], "optimizer.gamma' = 2"),
        (["optimizer.schedule=linear"], "choose from multistep, cosine"),
        (["trainer.precision=bf16"], "must be one of auto, 32-true"),
        (["data.val_mode=holdout", "data.val_count=20"], "drive has 20 training images; hold out at most 19"),
        (["data.val_mode=holdout", "data.val_count=-1"], "val_count' = -1"),
        (["evaluation.test_checkpoint=best"], "must never select a checkpoint"),
        (["data.crop_sampling=vesel"], "did you mean vessel"),
    ],
)
def test_bad_values_fail_at_load_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_experiment("ablation_drive", overrides=overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_augmented_validation_leaks_so_only_the_paper_profile_may_use_it():
    assert load_experiment("ablation_drive", overrides=["data.val_mode=augmented", "data.val_count=26"]).run_arms
    with pytest.raises(ConfigError, match="a leak allowed only in the `paper` profile"):
        load_experiment("ablation_drive", "quick", ["data.val_mode=augmented"])


def test_retina_gan_paper_profile_is_the_papers_protocol():
    exp = load_experiment("retinagan_drive")  # the default profile
    patches_seen = {}
    for arm in exp.run_arms:
        config = exp.run_config(arm, 0)
        data = config.data
        assert (data.resize, config.evaluation.patch_size, data.val_mode, data.val_count) == (512, 128, "augmented", 120)
        assert (config.optimizer.lr, config.optimizer.schedule, config.optimizer.gamma) == (5e-4, "multistep", 1.0)  # constant
        assert config.evaluation.test_checkpoint == "best"
        per_batch = 16 * data.batch_size if data.crop_size is None else data.batch_size
        patches_seen[arm] = config.trainer.max_epochs * data.samples_per_epoch // data.batch_size * per_batch
        if config.module == "gan":
            assert config.gan.discriminator_scope == "image" and data.batch_size == 1
            assert 4000 <= config.trainer.max_epochs * data.samples_per_epoch <= 4200  # generator iterations, its Fig. 7
    assert len(set(patches_seen.values())) == 1, patches_seen  # every arm sees as many patches


def test_every_shipped_profile_loads():
    from retinalight.experiments import list_experiments

    for name in list_experiments():
        exp = load_experiment(name)
        raw = __import__("yaml").safe_load(exp.path.read_text())
        for profile in raw.get("profiles") or {}:
            assert load_experiment(name, profile).run_arms


def test_an_experiment_inherits_a_parent_and_names_only_what_differs(tmp_path):
    repo = Path(__file__).resolve().parent.parent
    (tmp_path / "child.yaml").write_text(
        "inherits: ablation_drive\n"
        "data: {batch_size: 2}\n"
        "arms:\n  sa_unet: {model: {drop_rate: 0.1}}\n"
        "profiles:\n  quick: {trainer: {max_epochs: 1}}\n"
    )
    child = load_experiment(str(tmp_path / "child.yaml"), "quick")
    config = child.run_config("sa_unet", 0)
    assert child.name == "child" and config.data.dataset == "drive" and config.trainer.max_epochs == 1
    assert config.model.kwargs["drop_rate"] == 0.1 and config.model.kwargs["block_size"] == 7  # merged into the parent's arm
    assert config.data.crop_size is None and config.data.batch_size == 2  # the child's quick replaced the parent's
    assert load_experiment(str(tmp_path / "child.yaml"), "cpu").run_config("unet", 0).data.crop_size == 128  # inherited
    (tmp_path / "loop.yaml").write_text("inherits: loop.yaml\narms: {}\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_experiment(str(tmp_path / "loop.yaml"))
    assert (repo / "experiments" / "ablation_chase.yaml").read_text().count("\n") < 45
