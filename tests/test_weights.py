"""Checkpoint files read as data (training/weights.py): weights only, errors that name the file,
the network's plain state dict taken out of a Lightning checkpoint for models.load_weights."""

import os

import pytest
import torch

from resnode_lightning.models import ResNet, load_weights
from resnode_lightning.training.weights import network_state_dict, read_checkpoint, read_network_weights


def tied_resnet() -> ResNet:
    torch.manual_seed(0)
    return ResNet(depth=4, base_width=4, tied=True).double()


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def lightning_checkpoint(state_dict: dict) -> dict:
    """What a LightningModule holding the model as ``self.network`` saves, beside other weights
    (an EMA copy, listed first; a loss's) that are not the network."""
    return {
        "epoch": 3,
        "state_dict": {
            **{f"ema.{k}": torch.zeros_like(v) for k, v in state_dict.items()},
            **{f"network.{k}": v for k, v in state_dict.items()},
            "loss.weight": torch.ones(10),
        },
    }


def test_a_state_dict_file_and_a_lightning_checkpoint_give_the_same_network_weights(tmp_path):
    tied = tied_resnet()
    torch.save(tied.state_dict(), tmp_path / "weights.pt")
    torch.save(lightning_checkpoint(tied.state_dict()), tmp_path / "last.ckpt")
    reference = load_weights(ResNet(depth=8, base_width=4).double(), tied.state_dict())
    for path in (tmp_path / "weights.pt", str(tmp_path / "last.ckpt")):
        weights = read_network_weights(path)
        assert weights.keys() == tied.state_dict().keys()  # the network's only: no ema., no loss.
        assert same_state(load_weights(ResNet(depth=8, base_width=4).double(), weights), reference)


def test_a_compiled_network_in_a_lightning_checkpoint_loads_into_a_plain_one():
    """A compiled network saves its keys as network._orig_mod.…; load_weights drops _orig_mod."""
    tied = tied_resnet()
    checkpoint = {"state_dict": {f"network._orig_mod.{k}": v for k, v in tied.state_dict().items()}}
    loaded = load_weights(ResNet(depth=4, base_width=4, tied=True).double(), network_state_dict(checkpoint))
    assert same_state(loaded, tied)


def test_a_lightning_checkpoint_without_a_network_gives_its_whole_state_dict_to_select_by_prefix():
    state = tied_resnet().state_dict()
    checkpoint = {"state_dict": {**{f"student.{k}": v for k, v in state.items()},
                                 **{f"teacher.{k}": v for k, v in state.items()}}}  # fmt: skip
    weights = network_state_dict(checkpoint)
    with pytest.raises(ValueError, match="no model under prefix='' .* under 'student.', 'teacher.'. Pass the prefix"):
        load_weights(ResNet(depth=4, base_width=4), weights)
    assert same_state(load_weights(ResNet(depth=4, base_width=4).double(), weights, prefix="teacher."), tied_resnet())


def test_a_file_in_the_old_torch_save_format_is_read_too(tmp_path):
    state = tied_resnet().state_dict()
    torch.save(state, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert all(torch.equal(v, state[k]) for k, v in read_network_weights(tmp_path / "old.pt").items())


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_file_is_refused_naming_it(tmp_path, damage):
    torch.save(tied_resnet().state_dict(), tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    damaged = {"truncated": data[: len(data) // 2], "garbage": b"not a checkpoint " * 20, "empty": b""}[damage]
    (tmp_path / "bad.pt").write_bytes(damaged)
    with pytest.raises(ValueError, match=r"bad.pt' is not a readable torch.save file .*truncated") as caught:
        read_network_weights(tmp_path / "bad.pt")
    assert "weights_only` set to `False` will likely succeed" not in str(caught.value)  # torch's advice, not ours


def test_a_file_with_other_objects_than_tensors_is_not_unpickled(tmp_path):
    torch.save({"state_dict": tied_resnet().state_dict(), "optimizer": torch.optim.SGD}, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match=r"bad.ckpt' holds objects other than tensors .*\(weights_only=True\)"):
        read_checkpoint(tmp_path / "bad.ckpt")


def test_a_pickle_that_would_run_code_is_refused_as_holding_other_objects_and_runs_nothing(tmp_path):
    class Malicious:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"state_dict": Malicious()}, tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match=r"holds objects other than tensors .*\(weights_only=True\)"):
        read_network_weights(tmp_path / "evil.ckpt")
    assert not (tmp_path / "pwned").exists()


def test_a_file_that_is_no_checkpoint_is_refused_naming_it_and_saying_what_it_holds(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"list.pt': not a checkpoint: a list, where a Lightning checkpoint"):
        read_network_weights(tmp_path / "list.pt")
    torch.save({"epoch": 3}, tmp_path / "dict.pt")
    with pytest.raises(ValueError, match=r"not a checkpoint: a mapping with keys \['epoch'\]"):
        read_network_weights(tmp_path / "dict.pt")


def test_a_folder_or_a_missing_file_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match="is a folder, not a checkpoint file: name the .ckpt file in it"):
        read_network_weights(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"'.*nowhere.ckpt' does not exist"):
        read_network_weights(tmp_path / "nowhere.ckpt")
