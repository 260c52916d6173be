import pytest
import torch

from retinalight.errors import ConfigError, UnknownNameError
from retinalight.models import count_parameters, create_model, list_models
from retinalight.models.blocks import SpatialAttention

PAPER_COUNTS = {  # SA-UNet Table IV: (parameters, BatchNorm buffer values)
    "unet23": (2_158_705, 0),
    "unet": (535_793, 0),
    "unet_sa": (535_891, 0),
    "sd_unet": (535_793, 0),
    "backbone": (537_201, 1_408),
    "sa_unet": (537_299, 1_408),
}


@pytest.mark.parametrize("name", PAPER_COUNTS)
def test_parameter_counts_match_the_paper(name):
    assert count_parameters(create_model(name)) == PAPER_COUNTS[name]


def test_spatial_attention_has_98_parameters_and_a_map_in_unit_range():
    attention = SpatialAttention()
    assert sum(p.numel() for p in attention.parameters()) == 98
    x = torch.randn(2, 16, 8, 8) * 10
    weights = attention.attention_map(x)
    assert weights.shape == (2, 1, 8, 8) and weights.min() >= 0 and weights.max() <= 1
    assert torch.allclose(attention(x), x * weights)


@pytest.mark.parametrize("side", [592, 1008, 128])
def test_sa_unet_output_matches_input_size(side):
    model = create_model("sa_unet").eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, side, side)).shape == (1, 1, side, side)


def test_dropblock_is_random_in_train_mode_only():
    model = create_model("sd_unet", drop_rate=0.18)
    x = torch.rand(1, 3, 64, 64)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_dropblock_drops_whole_blocks_at_the_configured_rate():
    from retinalight.models.blocks import DropBlock

    torch.manual_seed(0)
    layer = DropBlock(0.18, block_size=7).train()
    out = layer(torch.ones(8, 4, 64, 64))
    dropped = out == 0
    # overlapping blocks make the dropped share a little lower than drop_rate, as in the Keras layer
    assert 0.13 < dropped.float().mean() < 0.19
    assert torch.allclose(out[~dropped], out[~dropped][0]) and abs(out.mean().item() - 1) < 1e-4  # rescaled by numel / kept
    # the dropped mask is a union of whole 7x7 blocks: a 7x7 morphological opening leaves it unchanged
    mask = dropped.float().view(-1, 1, 64, 64)
    eroded = -torch.nn.functional.max_pool2d(-mask, 7, stride=1)
    opened = torch.nn.functional.max_pool2d(torch.nn.functional.pad(eroded, (6, 6, 6, 6)), 7, stride=1)
    assert torch.equal(opened, mask)
    layer.eval()
    assert torch.equal(layer(torch.ones(1, 1, 8, 8)), torch.ones(1, 1, 8, 8))


def test_input_not_divisible_fails_clearly():
    with pytest.raises(ValueError, match="divisible by 8"):
        create_model("unet")(torch.rand(1, 3, 60, 60))


def test_retina_attention_zeroes_features_outside_the_fov():
    model = create_model("retina_gan_generator", base_width=8, depth=2).eval()
    seen = {}
    model.head.register_forward_hook(lambda module, inputs, output: seen.update(features=inputs[0]))
    fov = torch.zeros(1, 1, 32, 32)
    fov[..., 8:24, 8:24] = 1
    with torch.no_grad():
        out = model(torch.rand(1, 3, 32, 32), fov)
    features = seen["features"]
    assert torch.all(features[..., fov[0, 0] == 0] == 0) and features[..., fov[0, 0] == 1].abs().sum() > 0
    bias = model.head.bias.item()
    assert torch.allclose(out[..., fov[0, 0] == 0], torch.full_like(out[..., fov[0, 0] == 0], bias))
    with pytest.raises(ValueError, match="needs the FOV mask"):
        model(torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("name", ["sa_unet", "r2unet", "retina_gan_generator"])
def test_gradients_reach_every_parameter(name):
    model = create_model(name) if name == "sa_unet" else create_model(name, base_width=8)
    out = model(torch.rand(2, 3, 64, 64), torch.ones(2, 1, 64, 64))
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing


SMP_SMALL = ["smp_unet_resnet18", "smp_fpn_resnet18"]


@pytest.mark.parametrize("name", [n for n in list_models() if n != "patch_discriminator"] + SMP_SMALL)
def test_every_model_runs_forward_backward_at_64(name):
    model = create_model(name)
    image = torch.rand(2, 3, 64, 64)
    out = model(image, torch.ones(2, 1, 64, 64))
    assert out.shape == (2, 1, 64, 64)
    out.mean().backward()


def test_smp_model_accepts_sizes_not_divisible_by_32():
    model = create_model("smp_unet_resnet18").eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 80, 80)).shape == (1, 1, 80, 80)


def test_discriminator_gives_one_logit_per_pair_at_128_and_512():
    model = create_model("patch_discriminator").eval()
    with torch.no_grad():
        for side in (128, 512):
            assert model(torch.rand(2, 1, side, side), torch.rand(2, 1, side, side)).shape == (2, 1)
    model.train()
    model(torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_registry_documents_every_model_in_one_line():
    models = list_models()
    assert {
        "unet23",
        "unet",
        "unet_sa",
        "sd_unet",
        "backbone",
        "sa_unet",
        "r2unet",
        "runet",
        "retina_gan_generator",
        "patch_discriminator",
    } <= set(models)
    assert all(doc and "\n" not in doc for doc in models.values())


def test_unknown_model_and_argument_fail_with_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean sa_unet"):
        create_model("sa_unte")
    with pytest.raises(ConfigError, match="did you mean drop_rate"):
        create_model("sa_unet", droprate=0.1)
