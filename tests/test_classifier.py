"""The LightningModule: metrics, the paper's transfer as configuration, resuming, clear errors."""

import csv
import functools
import re
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from training_helpers import RandomImages, trainer

from resnode_lightning.models import ResNet
from resnode_lightning.training import ImageClassifier


def resnet(**options) -> ResNet:
    torch.manual_seed(0)
    return ResNet(**{"depth": [2, 2, 2, 2], "base_width": 4, "num_classes": 4, **options})


def classifier(network=None, **options) -> ImageClassifier:
    sgd = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9)
    return ImageClassifier(network or resnet(), num_classes=4, optimizer=sgd, **options)


def test_validation_metrics_leave_out_the_sanity_check_batches(tmp_path):
    data = RandomImages()
    model = classifier()
    fit = trainer(tmp_path, num_sanity_val_steps=2, limit_train_batches=2)
    fit.fit(model, data)
    model.eval()
    with torch.no_grad():
        accuracy = (model(data.images).argmax(1) == data.labels).float().mean()
    # the sanity check saw the weights before training: had it counted, the epoch's figure would differ
    assert fit.callback_metrics["val/acc1"] == pytest.approx(accuracy.item())
    assert set(fit.callback_metrics) >= {"train/loss", "train/acc", "val/loss", "val/acc1"}


def test_accuracy_is_the_fraction_of_samples_classified_right_not_a_mean_over_classes():
    model = classifier()
    logits = torch.nn.functional.one_hot(torch.tensor([0, 0, 0, 1]), 4).float()  # 3 of 4 right, all class 0
    model.val_metrics(logits, torch.tensor([0, 0, 0, 0]))
    assert model.val_metrics.compute()["val/acc1"] == pytest.approx(0.75)  # a macro average would say 0.375


def test_top5_only_with_more_than_five_classes():
    assert list(classifier().val_metrics.keys(keep_base=False)) == ["val/acc1"]
    many = ImageClassifier(resnet(num_classes=10), num_classes=10)
    assert list(many.test_metrics.keys(keep_base=False)) == ["test/acc1", "test/acc5"]


def test_label_smoothing_is_the_cross_entropy_with_smoothed_targets():
    logits, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    smoothed = classifier(label_smoothing=0.1).loss(logits, labels)
    targets = 0.9 * torch.nn.functional.one_hot(labels, 4) + 0.1 / 4
    assert smoothed == pytest.approx(-(targets * logits.log_softmax(1)).sum(1).mean().item())


def test_a_network_with_other_classes_is_refused_with_the_field_to_set(tmp_path):
    model = ImageClassifier(resnet(num_classes=10), num_classes=4)
    with pytest.raises(ValueError, match=r"model.network.init_args.num_classes: 4"):
        trainer(tmp_path, fast_dev_run=1).fit(model, RandomImages())


def test_init_from_untie_and_deepen_then_train_only_stage_3(tmp_path):
    tied = resnet(tied=True, depth=[3, 3, 3, 3])
    torch.save(tied.state_dict(), tmp_path / "tied.pt")
    model = classifier(resnet(depth=[3, 3, 9, 3], gradient="adjoint"), init_from=str(tmp_path / "tied.pt"),
                       trainable_stages=[3])  # fmt: skip
    trainer(tmp_path, limit_train_batches=3, limit_val_batches=0).fit(model, RandomImages())
    after, source = model.network.state_dict(), tied.state_dict()
    # loaded, then frozen: everything outside stage 3 equals the tied checkpoint, BatchNorm statistics too
    assert all(torch.equal(after[k], source[k]) for k in after if not k.startswith("stages.2."))
    # stage 3 was deepened from 2 tied steps to 8 untied ones, all copies of the tied block, then trained
    blocks = model.network.stages[2].stack.blocks
    assert len(blocks) == 8 and not torch.equal(blocks[0].conv1.weight, blocks[7].conv1.weight)
    assert not torch.equal(blocks[0].conv1.weight, source["stages.2.stack.blocks.0.conv1.weight"])


def test_resuming_a_fine_tune_keeps_its_frozen_stages_and_does_not_reload_init_from(tmp_path):
    tied = resnet(tied=True)
    torch.save(tied.state_dict(), tmp_path / "tied.pt")
    options = dict(init_from=str(tmp_path / "tied.pt"), trainable_stages=[3])
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = classifier(resnet(depth=[2, 2, 5, 2]), **options)
    trainer(tmp_path, limit_train_batches=2, limit_val_batches=0, enable_checkpointing=True,
            callbacks=[checkpoints]).fit(first, RandomImages())  # fmt: skip
    (tmp_path / "tied.pt").unlink()  # a resumed run must not need the weights it started from
    resumed = classifier(resnet(depth=[2, 2, 5, 2]), **options)
    run = trainer(tmp_path, max_epochs=2, limit_train_batches=2, limit_val_batches=0)
    run.fit(resumed, RandomImages(), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert run.current_epoch == 2
    trainable = {id(p) for p in resumed.network.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in resumed.network.stages[2].parameters()}
    (optimizer,) = run.optimizers
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == trainable
    assert all(optimizer.state[p]["momentum_buffer"] is not None for p in resumed.network.stages[2].parameters())


def test_init_from_a_lightning_checkpoint_loads_its_network(tmp_path):
    first = classifier()
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="best")
    trainer(tmp_path, limit_train_batches=2, limit_val_batches=0, enable_checkpointing=True,
            callbacks=[checkpoints]).fit(first, RandomImages())  # fmt: skip
    model = classifier(init_from=checkpoints.best_model_path)
    model.trainer = trainer(tmp_path)
    model.on_fit_start()
    assert all(torch.equal(a, b) for a, b in zip(model.network.state_dict().values(),
                                                 first.network.state_dict().values()))  # fmt: skip


def test_init_from_a_missing_path_says_what_it_accepts(tmp_path):
    model = classifier(init_from=str(tmp_path / "nowhere.ckpt"))
    with pytest.raises(FileNotFoundError, match=r"model.init_from: .*nowhere.ckpt.* does not exist.*run folder"):
        trainer(tmp_path, fast_dev_run=1).fit(model, RandomImages())


def test_init_from_a_folder_or_weights_that_do_not_fit_are_refused_naming_the_field(tmp_path):
    """The command line resolves a run folder into its checkpoint file; the module takes a file."""
    with pytest.raises(ValueError, match=r"model.init_from: '.*' is a folder, not a checkpoint file"):
        classifier(init_from=str(tmp_path)).initialise_from_checkpoint()
    torch.save(resnet(base_width=8).state_dict(), tmp_path / "wide.pt")
    with pytest.raises(ValueError, match=r"model.init_from='.*wide.pt' does not fit the network: checkpoint tensor"):
        classifier(init_from=str(tmp_path / "wide.pt")).initialise_from_checkpoint()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (dict(label_smoothing=2.0), "model.label_smoothing=2.0 must lie in [0, 1): it is the ε of the cross-entropy"),
        (dict(label_smoothing=-0.5), "model.label_smoothing=-0.5 must lie in [0, 1)"),
        (dict(label_smoothing=1.0), "model.label_smoothing=1.0 must lie in [0, 1)"),
        (dict(warmup_steps=-10), "model.warmup_steps=-10 must be an integer >= 0: it is the number of optimizer"),
        (dict(warmup_steps=2.5), "model.warmup_steps=2.5 must be an integer >= 0"),
        (dict(num_classes=0), "model.num_classes=0 must be an integer >= 1: it is K, the number of classes"),
    ],
    ids=["smoothing-2", "smoothing-negative", "smoothing-1", "warmup-negative", "warmup-float", "no-classes"],
)
def test_numbers_out_of_range_are_refused_when_the_module_is_built_naming_the_field(setting, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ImageClassifier(resnet(), **{"num_classes": 4, **setting})


def test_an_epoch_shorter_than_log_every_n_steps_still_writes_a_training_row(tmp_path):
    """Per-step keys (train/loss, train/acc) reach the logger every log_every_n_steps; the epoch
    means train/epoch_loss and train/epoch_acc once per epoch, however short."""
    model = classifier()
    logger = CSVLogger(tmp_path, name="run")
    run = trainer(tmp_path, logger=logger, log_every_n_steps=50, limit_train_batches=3, limit_val_batches=1)
    run.fit(model, RandomImages())
    with open(Path(logger.log_dir) / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    training = [row for row in rows if row.get("train/epoch_loss")]
    assert len(training) == 1 and training[0]["step"] == "2"  # the epoch's last step, counted from 0
    assert 0 <= float(training[0]["train/epoch_acc"]) <= 1
    # the per-step keys keep their names (on_step with on_epoch would make them train/loss_step)
    assert {"train/loss", "train/acc"} <= set(run.callback_metrics)
    assert not any(key.endswith(("_step", "_epoch")) for key in run.callback_metrics)


def test_freezing_everything_is_refused_before_training(tmp_path):
    model = classifier()
    model.network.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameter"):
        trainer(tmp_path, fast_dev_run=1).fit(model, RandomImages())


def test_validating_without_a_checkpoint_measures_the_transferred_weights(tmp_path):
    """Accuracy before fine-tuning: `validate` loads init_from; with a checkpoint, the checkpoint wins."""
    tied = resnet(tied=True)
    torch.save(tied.state_dict(), tmp_path / "tied.pt")
    model = classifier(resnet(depth=[2, 2, 5, 2]), init_from=str(tmp_path / "tied.pt"))
    trainer(tmp_path).validate(model, RandomImages())
    stage3 = model.network.stages[2].stack.blocks
    assert all(torch.equal(block.conv1.weight, tied.stages[2].stack.blocks[0].conv1.weight) for block in stage3)
