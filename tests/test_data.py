"""The data layer: in-memory batches, batched augmentation, and the data modules on small generated image trees."""

import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import image_trees
import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from resnode_lightning.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    ImageNetDataModule,
    TensorBatches,
    image_folder,
)
from resnode_lightning.data.augment import normalise, random_crop_flip
from resnode_lightning.data.constants import DIGITS_MEAN, DIGITS_STD, IMAGENET_MEAN, IMAGENET_STD
from resnode_lightning.data.in_memory import seeded_split


def numbered(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n uint8 images (1, 2, 2) filled with their index, and their indices as labels."""
    return torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous(), torch.arange(n)


def delivered(batches) -> list[int]:
    """The labels of all samples in ``batches``, in order."""
    return [int(i) for _, labels in batches for i in labels]


# -- TensorBatches --------------------------------------------------------------------------------


def test_batches_are_gathered_uint8_images_with_int64_labels():
    images, labels = numbered(10)
    batches = list(TensorBatches(images, labels, batch_size=4))
    assert [tuple(b[0].shape) for b in batches] == [(4, 1, 2, 2), (4, 1, 2, 2), (2, 1, 2, 2)]
    assert all(b[0].dtype == torch.uint8 and b[1].dtype == torch.int64 for b in batches)
    assert all(torch.equal(b[0][:, 0, 0, 0].long(), b[1]) for b in batches)
    assert len(TensorBatches(images, labels, batch_size=4)) == 3
    assert len(TensorBatches(images, labels, batch_size=4, drop_last=True)) == 2


def test_each_epoch_has_its_own_seeded_order_the_same_on_every_run():
    images, labels = numbered(50)
    first, again = (TensorBatches(images, labels, 8, shuffle=True, seed=3) for _ in range(2))
    epochs = [delivered(first) for _ in range(3)]
    assert epochs == [delivered(again) for _ in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]
    assert all(sorted(epoch) == list(range(50)) for epoch in epochs)
    assert epochs[0] != delivered(TensorBatches(images, labels, 8, shuffle=True, seed=4))


def test_the_epoch_comes_from_the_epoch_source_when_one_is_given():
    images, labels = numbered(50)
    trainer_epoch = 4
    batches = TensorBatches(images, labels, 8, shuffle=True, seed=3, epoch_source=lambda: trainer_epoch)
    extra_calls = [delivered(batches) for _ in range(3)]  # e.g. Lightning checking that it is iterable
    counting = TensorBatches(images, labels, 8, shuffle=True, seed=3)
    assert extra_calls == [[int(i) for i in counting.epoch_indices(4)]] * 3


@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_shard_every_epoch_without_overlap(drop_last):
    images, labels = numbered(103)
    ranks = [
        TensorBatches(images, labels, 8, shuffle=True, drop_last=drop_last, seed=1, rank=r, world_size=3)
        for r in range(3)
    ]
    for _ in range(2):  # two epochs
        shards = [delivered(rank) for rank in ranks]
        everything = [i for shard in shards for i in shard]
        assert len(set(everything)) == len(everything), "no sample on two ranks"
        if drop_last:  # equal full batches on every rank, as DDP training needs
            assert {len(rank) for rank in ranks} == {103 // 3 // 8}
            assert all(len(shard) == 103 // 3 // 8 * 8 for shard in shards)
        else:  # evaluation: every sample exactly once
            assert sorted(everything) == list(range(103))


def take(batches: TensorBatches, count: int) -> list[list[int]]:
    """The labels of the next ``count`` batches, epoch after epoch."""
    taken = []
    while len(taken) < count:
        for batch in batches:
            taken.append(delivered([batch]))
            if len(taken) == count:
                break
    return taken


@pytest.mark.parametrize("stop_after", [1, 3, 4])  # 3 batches per epoch: mid-epoch, at its end, in the next
def test_a_restored_iterable_continues_with_exactly_the_batches_of_an_uninterrupted_one(stop_after):
    images, labels = numbered(50)
    settings = dict(batch_size=8, shuffle=True, drop_last=True, seed=5, rank=1, world_size=2)
    uninterrupted = take(TensorBatches(images, labels, **settings), 9)
    interrupted = TensorBatches(images, labels, **settings)
    take(interrupted, stop_after)
    restored = TensorBatches(images, labels, **settings)
    restored.load_state_dict(interrupted.state_dict())
    assert take(restored, 9 - stop_after) == uninterrupted[stop_after:]


# -- Augmentation and normalisation ----------------------------------------------------------------


def crop_and_flip_of(image: torch.Tensor, original: torch.Tensor, padding: int) -> tuple[int, int, bool] | None:
    """The offsets and flip that make ``image`` from ``original``, if there are any."""
    padded = nn.functional.pad(original, (padding,) * 4)
    height, width = original.shape[-2:]
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            window = padded[:, dy : dy + height, dx : dx + width]
            for flipped in (False, True):
                if torch.equal(image, window.flip(-1) if flipped else window):
                    return dy, dx, flipped
    return None


def test_every_image_is_a_crop_of_its_zero_padded_self_possibly_mirrored():
    # distinct non-zero pixels: the crop and flip behind each output are unique
    original = torch.arange(1, 3 * 6 * 6 + 1).view(3, 6, 6)
    batch = original.expand(400, 3, 6, 6).contiguous()
    out = random_crop_flip(batch, padding=2, flip=True, generator=torch.Generator().manual_seed(0))
    found = [crop_and_flip_of(image, original, padding=2) for image in out]
    assert None not in found
    assert {(dy, dx) for dy, dx, _ in found} == {(dy, dx) for dy in range(5) for dx in range(5)}
    assert 150 < sum(flipped for *_, flipped in found) < 250
    assert out.shape == batch.shape and out.dtype == batch.dtype


def test_augmentation_is_reproducible_from_its_generator_and_varies_across_the_batch():
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    first, again, other = (random_crop_flip(images, 4, True, torch.Generator().manual_seed(seed)) for seed in (7, 7, 8))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.equal(first, images)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augmentation_and_normalisation_on_cuda_equal_those_on_the_cpu():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    on_cpu = random_crop_flip(images, 4, True, torch.Generator().manual_seed(0))
    on_cuda = random_crop_flip(images.cuda(), 4, True, torch.Generator().manual_seed(0))
    assert on_cuda.is_cuda and torch.equal(on_cuda.cpu(), on_cpu)
    torch.testing.assert_close(
        normalise(on_cuda, DIGITS_MEAN * 3, DIGITS_STD * 3).cpu(), normalise(on_cpu, DIGITS_MEAN * 3, DIGITS_STD * 3)
    )


def test_normalisation_maps_pixels_to_standard_scores_per_channel():
    images = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    out = normalise(images, mean, std)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 4, 4)
    expected = torch.tensor([(0 / 255 - 0.1) / 0.2, (128 / 255 - 0.5) / 0.3, (255 / 255 - 0.9) / 0.4])
    torch.testing.assert_close(out[0, :, 0, 0], expected)
    with pytest.raises(TypeError, match="uint8"):
        normalise(out, mean, std)


# -- Digits ----------------------------------------------------------------------------------------


def test_digits_load_offline_as_normalised_single_channel_batches():
    data = DigitsDataModule(batch_size=32)
    assert (data.num_classes, data.in_channels) == (10, 1)
    data.setup("fit")
    assert data.classes == [str(d) for d in range(10)]
    assert len(data.splits["train"].labels) + len(data.splits["val"].labels) == 1797
    assert data.splits["test"] is data.splits["val"]
    images, labels = data.transform_batch(next(iter(data.train_dataloader())), training=True)
    assert images.shape == (32, 1, 8, 8) and images.dtype == torch.float32 and labels.dtype == torch.int64
    everything = data.transform_batch((data.splits["train"].images, data.splits["train"].labels), training=False)[0]
    assert abs(everything.mean()) < 0.05 and abs(everything.std() - 1) < 0.05  # DIGITS_MEAN/STD fit the data


def test_batch_size_is_the_global_batch_whose_share_each_rank_takes():
    """On W processes each rank takes batch_size / W samples, and at every step the ranks' batches
    together are the batch one process takes at that step."""

    def training_batches(rank: int, world_size: int) -> list[list[tuple[int, ...]]]:
        """Each batch's images, as tuples of their pixels."""
        data = DigitsDataModule(batch_size=16)
        data.trainer = SimpleNamespace(training=True, global_rank=rank, world_size=world_size, current_epoch=0)
        data.setup("fit")
        return [[tuple(image.flatten().tolist()) for image in images] for images, _ in data.train_dataloader()]

    one = training_batches(0, 1)
    ranks = [training_batches(rank, 2) for rank in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(one) and {len(batch) for batch in ranks[0]} == {8}
    for step, batch in enumerate(one):
        assert sorted(batch) == sorted(ranks[0][step] + ranks[1][step])
    with pytest.raises(ValueError, match=r"data.batch_size=16 is the global batch .* among 3 processes: set "
                                         r"--data.batch_size 15 or 18"):  # fmt: skip
        training_batches(0, 3)


def test_the_splits_live_on_the_training_device_and_batches_are_gathered_there():
    """On a GPU the whole decoded data set sits on it: a batch is an index_select there, with no copy
    per step (the "meta" device stands in for a GPU: tensors with shapes and no data)."""
    data = DigitsDataModule(batch_size=16)
    data.trainer = SimpleNamespace(training=True, global_rank=0, world_size=1, current_epoch=0,
                                   strategy=SimpleNamespace(root_device=torch.device("meta")))  # fmt: skip
    data.setup("fit")
    assert {split.images.device.type for split in data.splits.values()} == {"meta"}
    assert data.splits["test"] is data.splits["val"]  # moved once
    images, labels = next(iter(data.train_dataloader()))
    assert images.device.type == labels.device.type == "meta" and images.shape == (16, 1, 8, 8)


def test_an_epoch_runs_no_python_per_sample():
    """Batches are gathered, augmented and normalised as whole tensors: the Python calls an epoch
    makes per batch do not grow with the batch."""

    def python_calls_for_ten_batches(batch_size: int) -> int:
        data = DigitsDataModule(batch_size=batch_size, augment=True)
        data.trainer = SimpleNamespace(training=True, global_rank=0, world_size=1, current_epoch=0)
        data.setup("fit")
        calls = 0

        def count(frame, event, arg) -> None:
            nonlocal calls
            calls += event == "call"

        sys.setprofile(count)
        try:
            for _, batch in zip(range(10), data.train_dataloader()):
                data.on_after_batch_transfer(batch, 0)
        finally:
            sys.setprofile(None)
        return calls

    small, large = python_calls_for_ten_batches(8), python_calls_for_ten_batches(128)
    assert small > 10 and abs(large - small) <= 10  # a call per sample would add 1200


def test_the_seeded_split_is_deterministic_and_disjoint():
    kept, held_out = seeded_split(1797, 0.2, seed=0)
    again = seeded_split(1797, 0.2, seed=0)
    assert torch.equal(kept, again[0]) and torch.equal(held_out, again[1])
    assert len(held_out) == 359 and sorted(kept.tolist() + held_out.tolist()) == list(range(1797))
    assert not torch.equal(held_out, seeded_split(1797, 0.2, seed=1)[1])


def test_augmentation_applies_only_while_the_trainer_trains():
    data = DigitsDataModule(augment=True)
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    plain = normalise(batch[0], DIGITS_MEAN, DIGITS_STD)
    data.trainer = SimpleNamespace(training=False, global_rank=0, world_size=1)
    assert torch.equal(data.on_after_batch_transfer(batch, 0)[0], plain)
    data.trainer.training = True
    assert not torch.equal(data.on_after_batch_transfer(batch, 0)[0], plain)


@pytest.mark.slow  # the spawned process imports Lightning: about 4 s
def test_a_data_module_can_be_sent_to_the_processes_ddp_spawn_starts(capfd):
    # the child unpickles the module and prints it; spawn raises if the child fails
    torch.multiprocessing.spawn(print, args=(DigitsDataModule(augment=True),), nprocs=1)
    assert capfd.readouterr().out.startswith("0 ")


class BatchRecorder(pl.LightningModule):
    """A linear classifier that records the labels and images of every training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def training_step(self, batch, batch_index):
        images, labels = batch
        self.seen.append((labels, images))
        return nn.functional.cross_entropy(self.linear(images.flatten(1)), labels)

    def validation_step(self, batch, batch_index):
        images, labels = batch
        assert images.dtype == torch.float32 and labels.dtype == torch.int64

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tmp_path, ckpt_path=None, every_n_train_steps: int | None = None, limit_train_batches=None) -> BatchRecorder:
    model = BatchRecorder()
    callbacks = []
    if every_n_train_steps:
        callbacks.append(ModelCheckpoint(tmp_path, "{step}", every_n_train_steps=every_n_train_steps, save_top_k=-1))
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=2,
        limit_train_batches=limit_train_batches,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=bool(callbacks),
        callbacks=callbacks,
        limit_val_batches=1,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, DigitsDataModule(batch_size=256, augment=True, seed=2), ckpt_path=ckpt_path)
    return model


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")  # the checkpoint callback: not needed
@pytest.mark.parametrize(
    "step, limit",  # 5 batches per epoch: mid-epoch, at its end, in the next one; epochs cut to 4, in the middle
    [(3, None), (5, None), (7, None), (2, 4)],
)
def test_lightning_resumes_training_with_exactly_the_batches_of_an_uninterrupted_run(tmp_path, step, limit):
    uninterrupted = fit(tmp_path / "whole", limit_train_batches=limit).seen
    fit(tmp_path / "interrupted", every_n_train_steps=step, limit_train_batches=limit)
    checkpoint = tmp_path / "interrupted" / f"step={step}.ckpt"
    resumed = fit(tmp_path / "resumed", ckpt_path=checkpoint, limit_train_batches=limit).seen
    assert len(uninterrupted) == 2 * (limit or 5) and len(resumed) == len(uninterrupted) - step
    for (labels, images), (expected_labels, expected_images) in zip(resumed, uninterrupted[step:]):
        assert torch.equal(labels, expected_labels)
        assert torch.equal(images, expected_images)  # the augmentation continues exactly, too


# -- CIFAR -----------------------------------------------------------------------------------------

CIFAR10_CLASSES = list(image_trees.CIFAR10_CLASSES)


@pytest.fixture
def cifar_copy(cifar_jpg_root, tmp_path):
    """A private copy of the small image tree, free to change."""
    return shutil.copytree(cifar_jpg_root, tmp_path / "cifar10-jpg")


def test_cifar_image_tree_gives_uint8_splits_and_normalised_augmented_batches(cifar_copy, tmp_path, monkeypatch):
    working_directory = tmp_path / "cwd"
    working_directory.mkdir()
    monkeypatch.chdir(working_directory)
    data = CIFAR10DataModule(root=str(cifar_copy.parent), batch_size=16)  # the folder that holds cifar10-jpg/
    assert (data.num_classes, data.in_channels) == (10, 3)
    data.prepare_data()
    data.setup("fit")
    assert data.classes == CIFAR10_CLASSES
    train, test = data.splits["train"], data.splits["test"]
    assert train.images.shape == (200, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (100, 3, 32, 32) and data.splits["val"] is test  # val_split = 0: the paper's way
    assert torch.equal(train.labels.bincount(), torch.full((10,), 20))
    images, labels = data.transform_batch(next(iter(data.train_dataloader())), training=True)
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert list(working_directory.iterdir()) == []  # nothing written to the working directory


def test_cifar10_normalisation_constants_fit_the_real_images(real_cifar_jpg_root):
    data = CIFAR10DataModule(root=str(real_cifar_jpg_root))
    data.setup("fit")
    test = data.splits["test"]
    everything = data.transform_batch((test.images, test.labels), training=False)[0]
    assert everything.mean(dim=(0, 2, 3)).abs().max() < 0.15  # CIFAR10_MEAN fits the real images; the paper's
    assert ((1 < everything.std(dim=(0, 2, 3))) & (everything.std(dim=(0, 2, 3)) < 1.5)).all()  # std is ~20 % low


def test_cifar_validation_hold_out_is_seeded_and_disjoint_from_training(cifar_jpg_root):
    def splits(seed):
        data = CIFAR10DataModule(root=str(cifar_jpg_root), val_split=0.1, seed=seed)
        data.setup("fit")
        return data.splits

    first, again, other = splits(0), splits(0), splits(1)
    assert len(first["val"].labels) == 20 and len(first["train"].labels) == 180
    assert torch.equal(first["val"].images, again["val"].images)
    assert not torch.equal(first["val"].images, other["val"].images)
    training = {bytes(image.numpy()) for image in first["train"].images}
    assert not any(bytes(image.numpy()) in training for image in first["val"].images)
    assert len(first["test"].labels) == 100


def test_a_cifar_image_tree_is_served_in_a_mixed_order_so_that_any_prefix_has_every_class(cifar_jpg_root):
    """The tree lists images class by class; a limited validation (the first batches) must not see
    only the first classes."""
    data = CIFAR10DataModule(root=str(cifar_jpg_root), batch_size=20)
    data.setup("fit")
    first_batch_labels = next(iter(data.val_dataloader()))[1]
    assert len(set(first_batch_labels.tolist())) >= 7


def test_missing_data_is_refused_with_the_path_and_the_ways_to_get_it(tmp_path):
    data = CIFAR10DataModule(root=str(tmp_path / "nothing"))
    for hook in (data.prepare_data, lambda: data.setup("fit")):
        with pytest.raises(FileNotFoundError, match="download: true") as error:
            hook()
        assert str(tmp_path / "nothing" / "cifar-10-batches-py") in str(error.value)
        assert f"{tmp_path / 'nothing'}/train/<class>/<image>" in str(error.value)


def test_empty_image_folders_are_refused_with_their_path(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "test").mkdir()
    with pytest.raises(FileNotFoundError, match=f"class folders of {tmp_path / 'train'} hold no images"):
        CIFAR10DataModule(root=str(tmp_path)).setup("fit")


def test_a_corrupt_image_is_refused_with_its_file_name(cifar_copy):
    corrupt = sorted((cifar_copy / "test" / "dog").iterdir())[3]
    corrupt.write_bytes(b"not a JPEG")
    with pytest.raises(ValueError, match=f"Cannot decode the image {corrupt}"):
        CIFAR10DataModule(root=str(cifar_copy)).prepare_data()


def test_cifar100_has_100_classes_and_refuses_a_10_class_tree(cifar_jpg_root):
    data = CIFAR100DataModule(root=str(cifar_jpg_root))
    assert (data.num_classes, data.in_channels) == (100, 3)
    for check in (data.check_data, lambda: data.setup("fit")):
        with pytest.raises(ValueError, match=f"{cifar_jpg_root / 'train'} has 10 class folders but CIFAR-100 has 100"):
            check()


class FakeTorchvisionCIFAR10:
    """Stands in for torchvision.datasets.CIFAR10, which needs a network to download: records its calls."""

    calls: list[tuple[str, bool, bool]] = []

    def __init__(self, root: str, train: bool, download: bool) -> None:
        FakeTorchvisionCIFAR10.calls.append((root, train, download))
        if download:
            (Path(root) / "cifar-10-batches-py").mkdir(parents=True, exist_ok=True)
        size = 50 if train else 10
        self.data = torch.arange(size * 32 * 32 * 3).remainder(256).to(torch.uint8).view(size, 32, 32, 3).numpy()
        self.targets = [i % 10 for i in range(size)]
        self.classes = CIFAR10_CLASSES


def test_download_true_downloads_both_splits_with_torchvision_into_root_and_reads_them(tmp_path, monkeypatch):
    monkeypatch.setattr(CIFAR10DataModule, "dataset_class", FakeTorchvisionCIFAR10)
    FakeTorchvisionCIFAR10.calls = []
    data = CIFAR10DataModule(root=str(tmp_path / "data"), download=True)
    data.prepare_data()
    assert FakeTorchvisionCIFAR10.calls == [(str(tmp_path / "data"), True, True), (str(tmp_path / "data"), False, True)]
    data.setup("fit")
    assert FakeTorchvisionCIFAR10.calls[2:] == [
        (str(tmp_path / "data"), True, False),
        (str(tmp_path / "data"), False, False),
    ]
    fake = FakeTorchvisionCIFAR10(str(tmp_path), train=True, download=False)
    assert torch.equal(data.splits["train"].images, torch.from_numpy(fake.data).permute(0, 3, 1, 2))
    assert data.splits["train"].labels.tolist() == fake.targets and data.classes == CIFAR10_CLASSES


# -- Where decoded images are cached ---------------------------------------------------------------


def files_under(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` (hidden ones too), with its modification time."""
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


def test_preparing_and_setting_up_an_image_tree_writes_nothing_into_the_data_folder(cifar_copy):
    before = files_under(cifar_copy.parent)
    data = CIFAR10DataModule(root=str(cifar_copy))
    data.prepare_data()
    data.setup("fit")
    assert files_under(cifar_copy.parent) == before


CACHE_PLACES = ["option", "RESNODE_CACHE_DIR", "XDG_CACHE_HOME", "HOME"]
"""Where the cache may be chosen, first the one that wins."""


@pytest.mark.parametrize("winner", CACHE_PLACES)
def test_the_cache_goes_to_the_option_else_the_variable_else_the_per_user_cache(
    winner, cifar_copy, tmp_path, monkeypatch
):
    """The winner and every place after it are set; the cache goes to the winner alone."""
    given = CACHE_PLACES[CACHE_PLACES.index(winner) :]
    for variable in CACHE_PLACES[1:]:
        if variable in given:
            monkeypatch.setenv(variable, str(tmp_path / variable))
        else:
            monkeypatch.delenv(variable, raising=False)
    option = str(tmp_path / "option") if winner == "option" else None
    CIFAR10DataModule(root=str(cifar_copy), cache_dir=option).setup("fit")
    expected = {
        "option": tmp_path / "option",
        "RESNODE_CACHE_DIR": tmp_path / "RESNODE_CACHE_DIR",
        "XDG_CACHE_HOME": tmp_path / "XDG_CACHE_HOME" / "resnode_lightning",
        "HOME": tmp_path / "HOME" / ".cache" / "resnode_lightning",
    }[winner]
    cached = list(tmp_path.rglob("*.pt"))
    assert len(cached) == 2 and {path.parent for path in cached} == {expected}  # train and test, there only


def test_decoded_images_are_cached_once_and_reused_without_decoding(cifar_copy, tmp_path, monkeypatch):
    first = CIFAR10DataModule(root=str(cifar_copy), cache_dir=str(tmp_path / "cache"))
    first.setup("fit")
    written = files_under(tmp_path / "cache")
    assert len(written) == 2

    def no_decoding(path):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(image_folder, "open_rgb", no_decoding)
    again = CIFAR10DataModule(root=str(cifar_copy), cache_dir=str(tmp_path / "cache"))
    again.setup("fit")
    assert torch.equal(again.splits["train"].images, first.splits["train"].images)
    assert files_under(tmp_path / "cache") == written


def test_the_cache_is_decoded_again_when_the_images_change(cifar_copy):
    CIFAR10DataModule(root=str(cifar_copy)).setup("fit")
    removed = sorted((cifar_copy / "train" / "cat").iterdir())[0]
    removed.unlink()
    data = CIFAR10DataModule(root=str(cifar_copy))
    data.setup("fit")
    assert len(data.splits["train"].labels) == 199


def test_two_data_folders_with_the_same_file_names_never_share_a_cache(tmp_path):
    """Same split names, same image names, other pixels: only the folder's place tells them apart."""
    trees = [
        image_trees.write_image_tree(tmp_path / name, images_per_split={"train": 2, "test": 1}, seed=seed)
        for seed, name in enumerate(["one", "two"])
    ]
    loaded = []
    for tree in trees:
        data = CIFAR10DataModule(root=str(tree), cache_dir=str(tmp_path / "cache"))
        data.setup("fit")
        loaded.append(data.splits["train"].images)
    assert len(files_under(tmp_path / "cache")) == 4
    assert not torch.equal(loaded[0], loaded[1])


def test_an_unwritable_cache_folder_falls_back_to_a_temporary_folder_with_one_warning(
    cifar_copy, tmp_path, monkeypatch
):
    (tmp_path / "a_file").write_text("")
    unwritable = tmp_path / "a_file" / "cache"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    with pytest.warns(UserWarning) as warned:
        CIFAR10DataModule(root=str(cifar_copy), cache_dir=str(unwritable)).setup("fit")
    messages = [str(warning.message) for warning in warned if "cache" in str(warning.message)]
    assert len(messages) == 1  # one message for both splits
    assert f"Cannot write the cache of decoded images in {unwritable}" in messages[0]
    assert "data.cache_dir" in messages[0] and "RESNODE_CACHE_DIR" in messages[0]
    assert len(list((tmp_path / "tmp").glob("resnode_lightning*/*.pt"))) == 2

    monkeypatch.setattr(image_folder, "open_rgb", lambda path: pytest.fail(f"decoded {path} again"))
    CIFAR10DataModule(root=str(cifar_copy), cache_dir=str(unwritable)).setup("fit")  # found there next time


def test_without_any_writable_cache_folder_the_images_are_decoded_with_a_warning(cifar_copy, tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "a_file" / "tmp"))
    with pytest.warns(UserWarning, match="decoded again at every start"):
        data = CIFAR10DataModule(root=str(cifar_copy), cache_dir=str(tmp_path / "a_file" / "cache"))
        data.setup("fit")
    assert len(data.splits["train"].labels) == 200


# -- Image trees that would decode into wrong labels or sizes ---------------------------------------


def cifar_module(root: Path) -> CIFAR10DataModule:
    """The in-memory module on ``root``."""
    return CIFAR10DataModule(root=str(root))


def imagenet_module(root: Path) -> ImageNetDataModule:
    """The streaming module on ``root``, its ``test`` folder as the validation folder, decoding in this process."""
    return ImageNetDataModule(root=str(root), num_classes=10, image_size=32, num_workers=0, val_dir="test")


BOTH_MODULES = pytest.mark.parametrize("module", [cifar_module, imagenet_module], ids=["cifar", "imagenet"])


@BOTH_MODULES
def test_a_renamed_test_class_folder_is_refused_naming_both_names(module, cifar_copy):
    (cifar_copy / "test" / "cat").rename(cifar_copy / "test" / "kitten")
    data = module(cifar_copy)
    for check in (data.check_data, lambda: data.setup("fit")):
        with pytest.raises(ValueError, match="same class folders: rename") as error:
            check()
        assert f"only in {cifar_copy / 'train'}: cat" in str(error.value)
        assert f"only in {cifar_copy / 'test'}: kitten" in str(error.value)


@BOTH_MODULES
@pytest.mark.parametrize("split", ["train", "test"])
def test_an_empty_class_folder_is_refused_naming_it(module, split, cifar_copy):
    for image in (cifar_copy / split / "dog").iterdir():
        image.unlink()
    data = module(cifar_copy)
    for check in (data.check_data, lambda: data.setup("fit")):
        with pytest.raises(ValueError, match=f"The class folder {cifar_copy / split / 'dog'} holds no images"):
            check()


@BOTH_MODULES
def test_hidden_folders_are_not_classes(module, cifar_copy):
    (cifar_copy / "test" / ".ipynb_checkpoints").mkdir()
    data = module(cifar_copy)
    data.setup("fit")
    assert data.classes == CIFAR10_CLASSES


def test_a_test_split_at_another_resolution_is_refused_by_the_in_memory_cifar(tmp_path):
    image_trees.write_image_tree(tmp_path, images_per_split={"train": 1}, size=32)
    image_trees.write_image_tree(tmp_path, images_per_split={"test": 1}, size=40)
    data = CIFAR10DataModule(root=str(tmp_path))
    for check in (data.check_data, data.prepare_data, lambda: data.setup("fit")):
        with pytest.raises(ValueError, match=f"The images of {tmp_path / 'test'} are 40x40 .* are 32x32 .*Resize"):
            check()


def test_imagenet_crops_every_split_to_image_size_whatever_its_resolution(tmp_path):
    image_trees.write_image_tree(tmp_path, images_per_split={"train": 1}, size=32)
    image_trees.write_image_tree(tmp_path, images_per_split={"test": 1}, size=40)
    data = imagenet_module(tmp_path)
    data.check_data()
    data.setup("fit")
    assert next(iter(data.val_dataloader()))[0].shape[-2:] == (32, 32)


def test_imagenet_names_a_corrupt_image_when_it_is_loaded(cifar_copy):
    corrupt = sorted((cifar_copy / "test" / "dog").iterdir())[3]
    corrupt.write_bytes(b"not a JPEG")
    data = ImageNetDataModule(root=str(cifar_copy), num_classes=10, image_size=32, num_workers=0, val_dir="test")
    data.setup("fit")
    with pytest.raises(ValueError, match=f"Cannot decode the image {corrupt}"):
        list(data.val_dataloader())


# -- Options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, field, minimum",
    [
        (lambda value: CIFAR10DataModule(root="data", batch_size=value), "batch_size", 1),
        (lambda value: DigitsDataModule(batch_size=value), "batch_size", 1),
        (lambda value: ImageNetDataModule(root="data", batch_size=value), "batch_size", 1),
        (lambda value: ImageNetDataModule(root="data", num_workers=value), "num_workers", 0),
        (lambda value: ImageNetDataModule(root="data", image_size=value), "image_size", 1),
        (lambda value: ImageNetDataModule(root="data", num_classes=value), "num_classes", 1),
    ],
    ids=["cifar batch_size", "digits batch_size", "imagenet batch_size", "num_workers", "image_size", "num_classes"],
)
def test_data_options_below_their_minimum_or_not_whole_are_refused_naming_the_field(make, field, minimum):
    for value in (minimum - 1, 2.5, True):
        with pytest.raises(ValueError, match=rf"data\.{field} must be a whole number >= {minimum}, got {value!r}"):
            make(value)
    make(minimum)


# -- ImageNet --------------------------------------------------------------------------------------


def test_imagenet_pipeline_gives_normalised_batches_decoded_in_worker_processes(cifar_jpg_root):
    """The real JPEG pipeline, on the small CIFAR tree at 32 px (its test/ folder as the validation folder)."""
    data = ImageNetDataModule(
        root=str(cifar_jpg_root), num_classes=10, image_size=32, batch_size=16, num_workers=2, val_dir="test"
    )
    assert (data.num_classes, data.in_channels) == (10, 3)
    data.setup("fit")
    assert data.classes == CIFAR10_CLASSES
    for loader, training in ((data.train_dataloader(), True), (data.val_dataloader(), False)):
        assert loader.num_workers == 2
        images, labels = next(iter(loader))
        assert images.shape == (16, 3, 32, 32) and images.dtype == torch.uint8 and labels.dtype == torch.int64
        normalised, _ = data.transform_batch((images, labels), training=training)
        assert torch.equal(normalised, normalise(images, IMAGENET_MEAN, IMAGENET_STD))
        assert normalised.dtype == torch.float32 and normalised.abs().max() < 3
    assert len(data.train_dataloader()) == 200 // 16 and len(data.test_dataloader()) == -(-100 // 16)


def test_imagenet_refuses_a_wrong_class_count_and_a_missing_folder_naming_them(cifar_jpg_root):
    with pytest.raises(ValueError, match=f"{cifar_jpg_root / 'train'} has 10 class folders but num_classes=1000"):
        ImageNetDataModule(root=str(cifar_jpg_root), val_dir="test").setup("fit")
    with pytest.raises(FileNotFoundError, match=f"No images under {cifar_jpg_root / 'val'}.*no download"):
        ImageNetDataModule(root=str(cifar_jpg_root), num_classes=10).setup("fit")


def test_imagenet_decoded_in_batches_on_the_device_gives_the_workers_images(cifar_jpg_root):
    """``decode: device`` reads bytes in the workers and decodes and crops each batch where the
    trainer runs (here the CPU): the same images as the workers make, up to the JPEG decoders' and
    resamplers' rounding; training crops of the same shape."""
    options = dict(root=str(cifar_jpg_root), num_classes=10, image_size=24, batch_size=16, num_workers=0,
                   val_dir="test")  # fmt: skip
    batches = {}
    for decode in ("workers", "device"):
        data = ImageNetDataModule(**options, decode=decode)
        data.trainer = SimpleNamespace(training=False, global_rank=0, world_size=1)
        data.setup("fit")
        batches[decode] = data.on_before_batch_transfer(next(iter(data.val_dataloader())), 0)
        if decode == "device":
            data.trainer.training = True
            trained, _ = data.on_before_batch_transfer(next(iter(data.train_dataloader())), 0)
            assert trained.shape == (16, 3, 24, 24) and trained.dtype == torch.uint8
    (workers, labels), (device, device_labels) = batches["workers"], batches["device"]
    assert torch.equal(labels, device_labels) and device.shape == workers.shape and device.dtype == torch.uint8
    assert (device.float() - workers.float()).abs().mean() < 3  # of 255


def test_an_unknown_decode_is_refused_naming_the_field_and_the_choices():
    with pytest.raises(ValueError, match="data.decode must be 'workers' or 'device', got 'gpu'"):
        ImageNetDataModule(root="data", decode="gpu")
