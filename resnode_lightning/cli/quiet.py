"""The known-harmless messages of third-party libraries, filtered in one place.

Each entry is a message a run printed although nothing was wrong, and why it is harmless here.
Everything else, ours or theirs, is shown.
"""

from __future__ import annotations

import logging
import warnings

HARMLESS_WARNINGS = {
    # CSVLogger warns on every resumed run that "previous log files ... will be deleted"; nothing is
    # deleted: it appends to metrics.csv (a resume continues in its run's folder).
    r"Experiment logs directory .* exists and is not empty": UserWarning,
    # W&B's deprecation of a setting it sets itself when no account is configured.
    r".*anonymous.* setting has no effect": UserWarning,
    # torch.utils._pytree, used by Lightning, warns about its own LeafSpec API.
    r".*LeafSpec.*": Warning,
    # Frozen stages (trainable_stages) are put in eval mode on purpose: BatchNorm statistics are frozen too.
    r"Found \d+ module\(s\) in eval mode at the start of training": UserWarning,
    # the checkpoint folder is the run's own on resume; a checkpoint from elsewhere starts a new run.
    r"The dirpath has changed from": UserWarning,
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
