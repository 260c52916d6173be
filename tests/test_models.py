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


def _execution_order(model, x):
    """Names of the convs and attention layers in the order they run."""
    order = []
    inner = {id(m.conv) for m in model.modules() if isinstance(m, SpatialAttention)}  # the attention's own conv
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, SpatialAttention)) and id(module) not in inner:
            module.register_forward_hook(lambda m, i, o, name=name: order.append(name))
    model(x)
    return order


def test_spatial_attention_sits_between_the_bottleneck_convs_as_in_the_official_code():
    # SA_UNet.py: convm = conv -> DropBlock -> BN -> ReLU -> spatial_attention -> conv -> DropBlock -> BN -> ReLU
    model = create_model("sa_unet").eval()
    with torch.no_grad():
        order = _execution_order(model, torch.rand(1, 3, 32, 32))
    attention = [n for n in order if type(model.get_submodule(n)) is SpatialAttention]
    assert len(attention) == 1
    at = order.index(attention[0])
    assert order[at - 1].startswith("bottleneck.") and order[at + 1].startswith("bottleneck.")
    assert sum(n.startswith("bottleneck.") for n in order) == 3  # conv, attention, conv
    # and the layer sequence of the block: conv, DropBlock, BN, ReLU, attention, conv, DropBlock, BN, ReLU
    kinds = [type(m).__name__ for m in model.bottleneck]
    assert kinds == ["Conv2d", "DropBlock", "BatchNorm2d", "ReLU", "SpatialAttention", "Conv2d", "DropBlock", "BatchNorm2d", "ReLU"]
    assert [type(m).__name__ for m in create_model("unet_sa").bottleneck] == ["Conv2d", "ReLU", "SpatialAttention", "Conv2d", "ReLU"]


def test_keras_initialisation_and_batchnorm_defaults():
    torch.manual_seed(0)
    model = create_model("sa_unet")
    conv = model.encoder[1][0]  # 16 -> 32 channels, 3x3
    bound = (6 / (9 * 16 + 9 * 32)) ** 0.5  # glorot-uniform
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert torch.all(conv.bias == 0) and torch.all(model.up[0].bias == 0) and torch.all(model.head.bias == 0)
    attention = model.bottleneck[4].conv.weight  # he-normal, truncated at 2 std: std about sqrt(2 / 98)
    assert 0.8 * (2 / 98) ** 0.5 < attention.std() < 1.2 * (2 / 98) ** 0.5
    bn = model.encoder[0][2]
    assert bn.eps == 1e-3 and bn.momentum == 0.01
    torch_init = create_model("sa_unet", init="torch").encoder[1][0]
    assert torch_init.bias.abs().sum() > 0  # PyTorch's default init draws biases
    with pytest.raises(ValueError, match="init"):
        create_model("unet", init="glorot")


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
    # a channels_last input gets the same blocks (painted in its own layout) and keeps its layout
    x = torch.rand(2, 5, 24, 20)
    torch.manual_seed(1)
    expected = layer(x)
    torch.manual_seed(1)
    out = layer(x.to(memory_format=torch.channels_last))
    assert torch.equal(out, expected) and out.is_contiguous(memory_format=torch.channels_last)
    layer.eval()
    assert torch.equal(layer(torch.ones(1, 1, 8, 8)), torch.ones(1, 1, 8, 8))


def test_bernoulli_positions_match_independent_draws():
    from retinalight.models.blocks import bernoulli_positions

    torch.manual_seed(0)
    count, p = 2_000_000, 0.004
    positions = bernoulli_positions(count, p)
    assert torch.equal(positions, positions.unique()) and positions.min() >= 0 and positions.max() < count
    mean, std = count * p, (count * p * (1 - p)) ** 0.5
    assert abs(len(positions) - mean) < 5 * std
    # spread evenly: each tenth of the range holds its share (5 standard deviations)
    per_tenth = torch.bincount(positions // (count // 10), minlength=10).float()
    assert torch.all((per_tenth - mean / 10).abs() < 5 * (std / 10**0.5))
    # gaps between successes are geometric: the share of adjacent successes is p
    adjacent = (positions.diff() == 1).float().mean().item()
    assert abs(adjacent - p) < 5 * (p / len(positions)) ** 0.5
    # the fallback when the first batch of draws falls short, and the edge cases
    assert len(bernoulli_positions(10, 1.0)) == 10 and len(bernoulli_positions(100, 1e-9)) == 0
    assert abs(len(bernoulli_positions(100_000, 0.5)) - 50_000) < 5 * 158


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


@pytest.mark.parametrize("name", [n for n in list_models() if n != "patch_discriminator"] + SMP_SMALL)
def test_folding_batch_norm_keeps_every_model_s_output(name):
    from retinalight.inference import fold_batch_norm

    torch.manual_seed(0)
    model = create_model(name)
    image, fov = torch.rand(2, 3, 64, 64), torch.ones(2, 1, 64, 64)
    with torch.no_grad():
        for _ in range(3):  # running statistics away from their initial 0 / 1
            model.train()(image * 2 + 0.5, fov)
        expected = model.eval()(image, fov)
        folded = fold_batch_norm(model)
        assert torch.allclose(folded(image, fov), expected, atol=1e-4, rtol=1e-4)
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    left = [m for m in folded.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if name in ("backbone", "sa_unet"):
        assert batch_norms and not left  # every conv-BN pair of the SA-UNet family is folded
    assert len([m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]) == len(batch_norms)  # original kept


def test_recurrent_conv_keeps_batch_statistics_per_step():
    """Each recurrence step of R2U-Net's RCL normalises with its own statistics: once the running statistics
    have seen a batch, eval mode reproduces train mode on it (a BatchNorm shared by the steps averages the
    statistics of three different inputs and does not)."""
    from retinalight.models.r2unet import RecurrentConv

    torch.manual_seed(0)
    layer = RecurrentConv(4, t=2)
    assert len([m for m in layer.modules() if isinstance(m, torch.nn.Conv2d)]) == 1  # the conv is shared
    for norm in layer.norms:
        norm.momentum = None  # cumulative average: after one batch, the running statistics are that batch's
        norm.reset_running_stats()
    x = torch.randn(4, 4, 32, 32) * 3 + 1
    with torch.no_grad():
        trained = layer.train()(x)
        assert torch.allclose(layer.eval()(x), trained, atol=1e-3)


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


def test_dense_keep_mask_equals_the_sparse_one_for_the_same_seeds():
    """The GPU's sync-free DropBlock mask (a max-pool of a seed map) and the CPU's painted one agree pixel for
    pixel on the same seeds, in both memory layouts; both keep the input's layout."""
    from retinalight.models.blocks import dense_keep_mask, sparse_keep_mask

    generator, dropped = torch.Generator().manual_seed(0), 0
    for shape, size in [((3, 4, 40, 33), 7), ((2, 2, 9, 12), 3), ((1, 3, 7, 7), 7)]:
        seeds = torch.rand(shape[0], shape[1], shape[2] - size + 1, shape[3] - size + 1, generator=generator) < 0.03
        for layout in (torch.contiguous_format, torch.channels_last):
            x = torch.zeros(shape).contiguous(memory_format=layout)
            dense = dense_keep_mask(seeds, size, x)
            sparse = sparse_keep_mask(torch.flatten(seeds).nonzero().flatten(), size, x)
            assert torch.equal(dense, sparse) and dense.is_contiguous(memory_format=layout)
            dropped += int((dense == 0).sum())
    assert dropped > 0  # the seeds did drop blocks
