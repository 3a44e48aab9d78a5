"""The known-harmless messages of third-party libraries, filtered in one place.

Each entry is a message a run printed although nothing was wrong, and why it is harmless here.
Everything else, ours or theirs, is shown.
"""

from __future__ import annotations

import logging
import warnings

HARMLESS_WARNINGS = {
    # W&B's deprecation of a setting it sets itself when no account is configured.
    r".*anonymous.* setting has no effect": UserWarning,
    # torch.utils._pytree, used by Lightning, warns about its own LeafSpec API.
    r".*LeafSpec.*": Warning,
    # Frozen stages (trainable_stages) are put in eval mode on purpose: BatchNorm statistics are frozen too.
    r"Found \d+ module\(s\) in eval mode at the start of training": UserWarning,
    # the checkpoint folder is the run's own on resume; a checkpoint from elsewhere starts a new run.
    r"The dirpath has changed from": UserWarning,
    # Lightning's own use of jsonargparse APIs that jsonargparse deprecates: not ours to change.
    r"(?s).*(was deprecated in v4\.\d+|By default only one JsonargparseDeprecationWarning)": Warning,
    # training metrics are also logged once per epoch (ImageClassifier), whatever log_every_n_steps is
    r"The number of training batches \(\d+\) is smaller than the logging interval": UserWarning,
}
HARMLESS_LOG_LINES = (
    # Lightning's advertisement of LitLogger, printed once per run.
    "litlogger",
    "💡 Tip:",
)


class DropHarmless(logging.Filter):
    """Drops the log records that :data:`HARMLESS_LOG_LINES` names."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(part in message for part in HARMLESS_LOG_LINES)


def quiet_known_messages() -> None:
    """Filter the harmless third-party messages above (idempotent)."""
    for pattern, category in HARMLESS_WARNINGS.items():
        warnings.filterwarnings("ignore", message=pattern, category=category)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropHarmless) for f in logger.filters):
            logger.addFilter(DropHarmless())
