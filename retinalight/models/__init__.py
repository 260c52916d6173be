"""Model registry: `create_model(name, **kwargs)` and `list_models()`.

Every network returns one channel of logits and has the signature `forward(image, fov=None)`; models
that need no FOV mask ignore it, so training code has one call for all.
"""

from retinalight.models import discriminator, r2unet, reference, smp, unet  # noqa: F401  (registration)
from retinalight.models.registry import create_model, list_models, model_arguments, model_revision, register_model
from retinalight.models.smp import LISTED as _SMP_LISTED

__all__ = ["create_model", "list_models", "model_arguments", "model_revision", "register_model", "count_parameters", "describe_models"]


def count_parameters(model) -> tuple[int, int]:
    """(parameters, buffer values): BatchNorm running statistics are buffers, not parameters."""
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    return params, buffers


def describe_models() -> list[tuple[str, int, int, str]]:
    """(name, parameters, buffer values, description) for every listed model."""
    rows = []
    entries = dict(list_models())
    for name in _SMP_LISTED:
        entries[name] = f"segmentation-models-pytorch {name[4:].replace('_', ' + ', 1)} (random init)"
    for name, doc in entries.items():
        rows.append((name, *count_parameters(create_model(name)), doc))
    return rows
