"""The quickstart shows the paper's chain on the digits, with the shipped configs and seed: a short tied
pretraining leaves headroom, the untied and deeper network keeps its accuracy, and fine-tuning stage 3 with
the adjoint lifts it (`make quickstart`; the numbers in the headers of quickstart.yaml and quickstart_finetune.yaml)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnode_lightning.cli import main

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
SUMMARY = Path(__file__).resolve().parents[1] / "experiments" / "quickstart_summary.py"
LIFT = 0.05
"""The least lift asserted: 6.1 to 11.4 points measured over seeds 0-4 with 1 and 2 threads (7.8, 8.1 with seed 0)."""


@pytest.mark.slow
def test_the_transfer_keeps_the_pretrained_accuracy_and_the_adjoint_fine_tune_lifts_it(in_empty_folder):
    pretraining = main(["fit", "--config", "quickstart.yaml", *QUIET])
    pretrained = pretraining.trainer.checkpoint_callback.best_model_score.item()
    assert 0.8 < pretrained < 0.95  # short on purpose: headroom (86-91 % measured)

    # untying is exact; deepening stage 3 from 7 to 15 steps moved no logit by more than 0.021 in the
    # measured runs, far too little to change a prediction: the same digits are right
    transfer = main(["validate", "--config", "quickstart_finetune.yaml", *QUIET])
    transferred = transfer.trainer.callback_metrics["val/acc1"].item()
    assert transferred == pretrained

    fine_tune = main(["fit", "--config", "quickstart_finetune.yaml", *QUIET])
    tuned = fine_tune.trainer.checkpoint_callback.best_model_score.item()
    assert tuned > transferred + LIFT

    # what moved: stage 3's 15 untied blocks; the frozen stem and the untied copies of stage 1 are the pretrained
    runs = in_empty_folder / "runs"
    pretrained_weights = torch.load(runs / "quickstart/version_0/checkpoints/best.ckpt", weights_only=True)
    tuned_weights = torch.load(runs / "quickstart_finetune/version_1/checkpoints/last.ckpt", weights_only=True)
    pretrained_weights, tuned_weights = pretrained_weights["state_dict"], tuned_weights["state_dict"]
    assert torch.equal(tuned_weights["network.stem.conv.weight"], pretrained_weights["network.stem.conv.weight"])
    assert torch.equal(tuned_weights["network.stages.0.stack.blocks.1.conv1.weight"],
                       pretrained_weights["network.stages.0.stack.blocks.0.conv1.weight"])  # fmt: skip
    assert "network.stages.2.stack.blocks.14.conv1.weight" in tuned_weights
    assert not torch.equal(tuned_weights["network.stages.2.stack.blocks.0.conv1.weight"],
                           pretrained_weights["network.stages.2.stack.blocks.0.conv1.weight"])  # fmt: skip

    # make quickstart's closing line reports the three numbers
    summary = subprocess.run([sys.executable, SUMMARY], capture_output=True, text=True, check=True).stdout
    assert (
        f"pretrained, tied [3, 3, 8, 3] {100 * pretrained:.1f} % → untied and deepened to [3, 3, 16, 3] "
        f"{100 * transferred:.1f} % → stage 3 fine-tuned with the adjoint {100 * tuned:.1f} %"
    ) in summary
