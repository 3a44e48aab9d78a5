"""Every shipped model config builds the model its comment describes, against today's signatures."""

from pathlib import Path

import pytest
import torch
from jsonargparse import ArgumentParser

from resnode_lightning.models import ResNet, SimpleResNet

CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "models").glob("*.yaml"))


def build(path: Path) -> torch.nn.Module:
    parser = ArgumentParser()
    parser.add_subclass_arguments(torch.nn.Module, "model")
    return parser.instantiate(parser.parse_args(["--model", str(path)])).model


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_model_config_builds_a_model(path):
    model = build(path)
    assert isinstance(model, (ResNet, SimpleResNet))


def test_table_2_configs_are_the_papers_cifar_transfer():
    configs = Path(__file__).parents[1] / "configs" / "models"
    pretrain, finetune = build(configs / "table2_pretrain_tied.yaml"), build(configs / "table2_finetune_untied.yaml")
    assert pretrain.depth == [4, 4, 4, 4] and all(s.is_tied for s in pretrain.stacks)
    assert finetune.depth == [4, 4, 64, 4] and not any(s.is_tied for s in finetune.stacks)
    assert [s.gradient for s in finetune.stacks] == ["backprop", "backprop", "adjoint", "backprop"]
