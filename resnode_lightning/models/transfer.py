"""The paper's weight workflow (its Table 2): pretrain tied, untie into a deeper model, fine-tune
chosen stages.

- :func:`untie`: tied stacks (θ_n = θ) become N independent copies; same function.
- :func:`deepen`: change the depth N → M of every stack, θ kept as a function of depth s.
- :func:`load_weights`: load the state dict of another depth, or of a tied model, into a model.
- :func:`train_only`: freeze everything but the chosen stages.

Each changes the set of parameters or their ``requires_grad``: build the optimizer afterwards.
Weights come in and go out as plain state dicts; reading checkpoint files is the training
layer's work (:mod:`resnode_lightning.training.weights`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import TypeVar

import torch
from torch import Tensor, nn

from ..numerics import Interpolation, ResidualStack
from .freezing import Freezable

Model = TypeVar("Model", bound=nn.Module)
FreezableModel = TypeVar("FreezableModel", bound=Freezable)
COMPILED_PREFIX = "_orig_mod."  # torch.compile wraps a module under this name


def named_stacks(model: nn.Module) -> list[tuple[str, ResidualStack]]:
    """Every residual stack of the model with its dotted name (e.g. ``"stages.2.stack"``)."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, ResidualStack)]


def untie(model: Model) -> Model:
    """Give every step of every stack its own copy of its block (in place, returns the model).

    Tied weights θ_n = θ become N independent copies θ_n = θ, running statistics included, so
    the network computes exactly the same function, in eval and in train mode; only the number
    of trainable parameters grows. Stacks whose blocks are already distinct are left alone.
    """
    for _, stack in named_stacks(model):
        stack.untie()
    return model


def deepen(model: Model, depth: int | Sequence[int], interpolation: Interpolation = "constant") -> Model:
    """Change the depth of every stack (in place, returns the model) by ResidualStack.deepen.

    Block i of a new stack of depth M takes the weights of old block ⌊i·N/M⌋ (or, ``"linear"``,
    a mix of its two neighbours); tied stacks stay tied. With h = 1/M the function changes only
    by the discretisation error, O(1/N) for Euler, and converges as M grows. A stack with a fixed
    step (``step="1"`` or a number) computes another function once deepened: it warns.

    Args:
        model: any model with residual stacks.
        depth: the new depth as the model's constructor counts it (its ``stack_depths``): for a
            :class:`~.resnet.ResNet` blocks per stage, transition block included, one value or one per
            stage (the paper's [4, 4, 64, 4] gives stacks of 3, 3, 63 and 3 blocks); for a
            :class:`~.simple.SimpleResNet` N, the blocks of its stack. A model without
            ``stack_depths`` takes N itself, one value for all its stacks or one per stack.
        interpolation: ``"constant"`` (the paper's rule) or ``"linear"`` in depth.
    """
    stacks = [stack for _, stack in named_stacks(model)]
    for stack, stack_depth in zip(stacks, stack_depths(model, depth, len(stacks)), strict=True):
        stack.deepen(stack_depth, interpolation)
    return model


def stack_depths(model: nn.Module, depth: int | Sequence[int], count: int) -> list[int]:
    """The depth N of each of the model's ``count`` stacks for ``depth`` as the model counts it."""
    if hasattr(model, "stack_depths"):
        return model.stack_depths(depth)
    if not isinstance(depth, (list, tuple)):
        return [depth] * count
    if len(depth) != count:
        raise ValueError(
            f"depth={list(depth)!r} has {len(depth)} values but {type(model).__name__} has {count} residual "
            "stacks: give one depth N for all of them or one per stack."
        )
    return list(depth)


def stage_names(model: nn.Module) -> list[str]:
    """The dotted names of the model's stages, stage 1 first: ``model.stages`` where it has them
    (a ResNet's transition block and stack), otherwise its residual stacks in order."""
    if isinstance(getattr(model, "stages", None), nn.ModuleList):
        return [f"stages.{i}" for i in range(len(model.stages))]
    return [name for name, _ in named_stacks(model)]


def train_only(model: FreezableModel, stages: Sequence[int]) -> FreezableModel:
    """Freeze all of the model but the given stages (in place, returns the model).

    Stages are numbered from 1, as in the paper: a :class:`~.resnet.ResNet`'s stages 1 to 4 are
    ``model.stages[0]`` to ``[3]``, each a transition block and its stack; a model without
    ``stages``, such as :class:`~.simple.SimpleResNet`, numbers its residual stacks (stage 1 is
    the simple ResNet's one stack). Everything else (stem, head, other stages) is frozen: no gradient,
    BatchNorm in eval mode whatever ``model.train()`` says (:class:`~.freezing.Freezable`). The
    paper's CIFAR fine-tuning trains stage 3 only: ``train_only(model, [3])``. Earlier freezing
    is undone first.
    """
    if not isinstance(model, Freezable):
        raise TypeError(
            f"train_only needs a model that keeps its frozen parts in eval mode through model.train(); "
            f"{type(model).__name__} is not one: derive it from resnode_lightning.models.Freezable."
        )
    if not isinstance(stages, Sequence) or not all(isinstance(n, int) and not isinstance(n, bool) for n in stages):
        raise TypeError(
            f"stages={stages!r} must be a list of stage numbers, e.g. [3] (train_only(model, [3]) trains "
            "stage 3 only)."
        )
    names = stage_names(model)
    unknown = [number for number in stages if not 1 <= number <= len(names)]
    if unknown:
        raise ValueError(
            f"stages={list(stages)!r} names no stage {unknown[0]!r}: the stages of {type(model).__name__} "
            f"are numbered 1 to {len(names)} ({', '.join(names)}), as in the paper."
        )
    model.unfreeze().freeze(parts_outside(model, [names[number - 1] for number in stages]))
    return model


def parts_outside(module: nn.Module, kept: Sequence[str], prefix: str = "") -> list[str]:
    """The largest submodules that are neither one of the ``kept`` parts nor hold one."""
    parts = []
    for name, child in module.named_children():
        full = prefix + name
        if any(part.startswith(f"{full}.") for part in kept):
            parts += parts_outside(child, kept, f"{full}.")
        elif full not in kept:
            parts.append(full)
    return parts


def load_weights(
    model: Model,
    state_dict: Mapping[str, Tensor],
    interpolation: Interpolation = "constant",
    prefix: str | None = None,
) -> Model:
    """Load a state dict into a model whose stacks may have other depths or tying (in place).

    Everything outside the stacks (stem, transition blocks, head, with BatchNorm's running
    statistics) is copied as it is. Each stack is converted by the rule of :func:`deepen`: block i
    of a target stack of depth M takes source block ⌊i·N/M⌋ of the state dict's N; a tied source
    (all its blocks equal) gives M copies, the paper's transfer of a tied model (4 blocks per
    stage) into an untied deeper one ([4, 4, 64, 4]).

    The models layer takes plain state dicts only: a checkpoint file, or a Lightning
    checkpoint's ``state_dict`` under ``network.``, is read into one by
    :func:`resnode_lightning.training.weights.read_network_weights`.

    Args:
        model: the target, built with the source's architecture but any depths and tying;
            a model wrapped by ``torch.compile`` loads into the network it wraps.
        state_dict: names → tensors, as ``model.state_dict()`` gives them.
        interpolation: ``"constant"`` (the paper's rule) or ``"linear"`` in depth.
        prefix: the start of the keys of the model's weights, stripped before loading; keys
            without it are ignored (an EMA or teacher copy, a loss's weights). None: ``""``, every
            key. ``_orig_mod.`` (what a compiled model adds) is dropped wherever it appears.

    Raises:
        TypeError: ``state_dict`` is a path or not a mapping (the message says how to read a file).
        ValueError: a value is not a tensor, or the mapping is a whole Lightning checkpoint; no
            model is found under ``prefix`` (the prefixes where one is found are listed); the
            state dict does not fit: a tensor the model needs is missing or left over
            (architecture) or has another shape (widths), the first one named; or a tied stack of
            the model would have to hold different blocks.
    """
    network = getattr(model, "_orig_mod", model)  # torch.compile wraps the network
    target = network.state_dict()
    tensors = check_state_dict(state_dict)
    source = CheckpointTensors(select_prefix(tensors, "" if prefix is None else prefix, reference=next(iter(target))))
    stacks = dict(named_stacks(network))
    source.check_architecture(target, stacks)
    converted: dict[str, Tensor] = {}
    for key, tensor in target.items():
        owner = stack_owning(key, stacks)
        if owner is None:
            converted[key] = source.take(key, tensor)
        elif key not in converted:  # the stack's first key: convert the whole stack
            converted.update(stack_weights(owner, stacks[owner], source, interpolation))
    network.load_state_dict(converted)
    return model


READ_A_FILE = (
    "read a checkpoint file (a Lightning .ckpt or a torch.save'd state dict) with "
    "resnode_lightning.training.weights.read_network_weights(path) and pass what it returns"
)


def check_state_dict(state_dict: object) -> dict[str, Tensor]:
    """``state_dict`` as a dict of names → tensors, or an error that says what it is instead."""
    if isinstance(state_dict, (str, os.PathLike)):
        raise TypeError(
            f"load_weights takes a state dict (names → tensors), not the path {os.fspath(state_dict)!r}: "
            f"the models layer reads no files; {READ_A_FILE}."
        )
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"load_weights takes a state dict (names → tensors), got a {type(state_dict).__name__}: pass "
            f"model.state_dict(), or {READ_A_FILE}."
        )
    if isinstance(state_dict.get("state_dict"), Mapping):
        raise ValueError(
            "load_weights takes a state dict (names → tensors), but this mapping holds a 'state_dict' "
            "entry: it is a whole Lightning checkpoint. Take the network's weights out of it with "
            "resnode_lightning.training.weights.network_state_dict(checkpoint), or "
            f"{READ_A_FILE}."
        )
    other = next((key for key, value in state_dict.items() if not isinstance(value, Tensor)), None)
    if other is not None:
        raise ValueError(
            f"load_weights takes a state dict (names → tensors), but entry {other!r} is a "
            f"{type(state_dict[other]).__name__}: pass model.state_dict(), or {READ_A_FILE}."
        )
    return dict(state_dict)


def select_prefix(tensors: dict[str, Tensor], prefix: str, reference: str) -> dict[str, Tensor]:
    """The tensors whose keys start with ``prefix``, without it (and without ``_orig_mod.``).
    ``reference``, the model's first key, must be among them; if not, the error lists the
    prefixes under which the checkpoint holds it."""
    selected = {
        key[len(prefix) :].replace(COMPILED_PREFIX, ""): value
        for key, value in tensors.items()
        if key.startswith(prefix)
    }
    if reference in selected:
        return selected
    found = sorted(
        {key[: len(key) - len(reference)] for key in tensors if key == reference or key.endswith(f".{reference}")}
    )
    if not found:
        raise ValueError(
            f"the checkpoint has no key ending in {reference!r}, the model's first tensor: it holds the "
            "weights of another model class. Build the model the checkpoint was trained as; only depths "
            "and tying may differ."
        )
    raise ValueError(
        f"the checkpoint holds no model under prefix={prefix!r} (it has no key {prefix + reference!r}); "
        f"it holds one under {', '.join(map(repr, found))}. Pass the prefix of the weights to load, "
        f"e.g. load_weights(model, state_dict, prefix={found[0]!r})."
    )


def stack_owning(key: str, stacks: Mapping[str, ResidualStack]) -> str | None:
    """The name of the stack whose entry ``key`` is, or None outside the stacks."""
    return next((name for name in stacks if key.startswith(f"{name}.")), None)


class CheckpointTensors:
    """The checkpoint's tensors, handed out by key with their shapes checked against the model's."""

    def __init__(self, tensors: dict[str, Tensor]) -> None:
        self.tensors = tensors

    def check_architecture(self, target: Mapping[str, Tensor], stacks: Mapping[str, ResidualStack]) -> None:
        """Refuse a checkpoint whose keys are not the model's (stacks: those of each of its blocks),
        before any shape is compared: a missing or extra key means another architecture."""
        expected = {key: tensor for key, tensor in target.items() if stack_owning(key, stacks) is None}
        for name, stack in stacks.items():
            prefix = f"{name}.blocks."
            template = stack.blocks[0].state_dict()
            for j in range(self.depth(prefix)):
                expected.update({f"{prefix}{j}.{key}": tensor for key, tensor in template.items()})
        missing = next((key for key in expected if key not in self.tensors), None)
        extra = next((key for key in self.tensors if key not in expected), None)
        if missing is not None:
            also = f", and it holds {extra!r}, which the model has no place for" if extra else ""
            raise ValueError(
                f"the checkpoint has no tensor {missing!r} (shape {tuple(expected[missing].shape)} in the "
                f"model){also}: it comes from another architecture (another model class, number of "
                "stages or block). Build the model the checkpoint was trained as; only depths and tying "
                "may differ."
            )
        if extra is not None:
            raise ValueError(
                f"checkpoint tensor {extra!r} (shape {tuple(self.tensors[extra].shape)}) has no place in "
                "the model: the checkpoint comes from another architecture (e.g. more stages). Build "
                "the model the checkpoint was trained as; only depths and tying may differ."
            )

    def take(self, key: str, like: Tensor) -> Tensor:
        tensor = self.tensors[key]
        if tensor.shape != like.shape:
            raise ValueError(
                f"checkpoint tensor {key!r} has shape {tuple(tensor.shape)} but the model's has shape "
                f"{tuple(like.shape)}: the checkpoint comes from a model of other widths (base_width, "
                "block, in_channels or num_classes). Build the model with the checkpoint's widths; "
                "only depths and tying may differ."
            )
        return tensor

    def depth(self, prefix: str) -> int:
        """1 + the largest block index under ``prefix`` (1 when there is none: block 0 is missing)."""
        indices = [int(key[len(prefix) :].split(".")[0]) for key in self.tensors if key.startswith(prefix)]
        return max(indices, default=0) + 1


def stack_weights(
    name: str, stack: ResidualStack, source: CheckpointTensors, interpolation: Interpolation
) -> dict[str, Tensor]:
    """The target stack's entries of the state_dict, from the checkpoint's blocks of that stack:
    rebuild the checkpoint's stack (tied when all its blocks are equal) and deepen it to the
    target's depth."""
    prefix = f"{name}.blocks."
    template = stack.blocks[0]
    blocks = []
    for j in range(source.depth(prefix)):
        block = copy.deepcopy(template)
        block.load_state_dict(
            {key: source.take(f"{prefix}{j}.{key}", like) for key, like in template.state_dict().items()}
        )
        blocks.append(block)
    tied = all(same_weights(block, blocks[0]) for block in blocks[1:])
    resized = ResidualStack([blocks[0]] * len(blocks) if tied else blocks).deepen(stack.depth, interpolation)
    if stack.is_tied and not resized.is_tied:
        raise ValueError(
            f"{name} is tied in the model, but the checkpoint has {len(blocks)} different blocks there, "
            "which one tied block cannot hold. Build the model with tied=False for this stage (or "
            "load a checkpoint of a tied model)."
        )
    return {
        f"{prefix}{i}.{key}": tensor
        for i, block in enumerate(resized.blocks)
        for key, tensor in block.state_dict().items()
    }


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two blocks hold equal parameters and buffers."""
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
