"""Training in several processes (`torchrun`, `accelerate launch`): who writes, who waits.

The launcher starts one process per device with RANK / WORLD_SIZE in the environment; the
transformers Trainer then runs data-parallel (gloo on CPU, nccl on GPU) through
accelerate's `PartialState`, which this module starts first so that sentitune's own steps
can coordinate too. Rank 0 alone stages, writes and publishes the run directory; what it
computes there (the run path, the metrics, or its error) is broadcast to every rank, so
all ranks return the same result or fail with the same one-line error. The process group
has a timeout (`SENTITUNE_DIST_TIMEOUT` seconds, default 1800), so a rank that dies or
stops answering ends the others with an error instead of a hang.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from typing import TypeVar

from sentitune.errors import SentituneError

TIMEOUT_ENV = "SENTITUNE_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800  # the Trainer's own ddp_timeout default
# How gloo, nccl and c10d word a peer that crashed or stopped answering.
_PEER_FAILURE = re.compile(r"closed by peer|Connection reset|Broken pipe|timed out|Timeout|"
                           r"NCCL|gloo|remote worker", re.IGNORECASE)

T = TypeVar("T")


def world_size() -> int:
    """Processes in this training job (1 when not launched by torchrun/accelerate)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """True in the one process that writes files and prints results."""
    return rank() == 0


def timeout_s() -> int:
    raw = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    if not raw.isdigit() or int(raw) <= 0:
        raise SentituneError(f"{TIMEOUT_ENV} must be a whole number of seconds > 0, got "
                             f"'{raw}'")
    return int(raw)


def start(cpu: bool):
    """Join the job's process group (a no-op in a single process) with the timeout; the
    Trainer's TrainingArguments reuse this state. Returns accelerate's PartialState."""
    from datetime import timedelta

    from accelerate import PartialState

    return PartialState(cpu=cpu, timeout=timedelta(seconds=timeout_s()))


def _active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def on_main(step: Callable[[], T], what: str) -> T:
    """Run `step` on rank 0 alone and return its result on every rank.

    The other ranks wait (in the broadcast, bounded by the timeout). A SentituneError on
    rank 0 is raised on every rank; any other failure is raised there with its traceback
    and as a one-line SentituneError on the others.
    """
    if not _active():
        return step()
    import torch.distributed as dist

    outcome: list = [None]
    failure = None
    if is_main():
        try:
            outcome = [("ok", step())]
        except SentituneError as exc:
            outcome = [("error", str(exc))]
        except BaseException as exc:
            failure = exc
            outcome = [("error", f"rank 0 failed while {what}: {type(exc).__name__}: {exc}")]
    with peer_failures():
        dist.broadcast_object_list(outcome, src=0)
    if failure is not None:
        raise failure
    status, value = outcome[0]
    if status == "error":
        raise SentituneError(value)
    return value


@contextlib.contextmanager
def peer_failures() -> Iterator[None]:
    """Turn a collective that failed because another rank died or hung into one line."""
    try:
        yield
    except RuntimeError as exc:
        if not (world_size() > 1 and _PEER_FAILURE.search(str(exc))):
            raise
        first = str(exc).strip().splitlines()[0][:300]
        raise SentituneError(
            f"training process {rank()} of {world_size()} lost its peers ({first}): another "
            f"process failed or did not answer within {timeout_s()} s ({TIMEOUT_ENV}); see "
            "its log, then rerun (add --resume to continue from the last epoch)") from None
