"""Sealed checkpoints of a training run, in the directory the platform gives the job.

A checkpoint holds every leaf of the train state (parameters and optimizer state, which counts
its own steps) as host numpy arrays, a small JSON `layout` (the batch size and schedule it was
trained with) and its own step, in one `.npz` (read back with `allow_pickle=False`). Host arrays
keep a checkpoint independent of how many devices wrote it: a job resumed on another machine
restores it onto its own mesh.

Nothing readable reaches the disk: the `.npz` is made in memory and sealed by the run's
`CheckpointSealer` (a job's: the project's data key, as every artifact) before it is written,
0600 in a 0700 directory. (Orbax, which wrote these before, writes plaintext files through
TensorStore and cannot be given a cipher; the state of the models trained here is small enough
to hold twice in memory while it is sealed.)

Each checkpoint is written into `<step>.partial/` and renamed to `<step>/` only once its file
is complete and synced, so a crash mid-write leaves a directory that is never taken for a
checkpoint (and is removed when the next store opens the directory); the previous checkpoint
stays the latest. `save` returning means the checkpoint is complete.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aiaas.core.trainers import CHECKPOINT_FILE, CHECKPOINT_PARTIAL_SUFFIX, CheckpointSealer

logger = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2
_STEP = "step"
_LAYOUT = "layout"
_NONCE_BYTES = 12
_PROCESS_AAD = b"aiaas-checkpoint"


@dataclass(frozen=True)
class RestoredCheckpoint:
    step: int
    leaves: list[np.ndarray]
    layout: dict[str, Any]


class ProcessSealer:
    """For a run the platform gives no sealer (a script, a notebook, a test): a key that lives
    only in this process's memory. Nothing readable is written, and only this process can
    resume from what it wrote."""

    def __init__(self) -> None:
        self._cipher = AESGCM(AESGCM.generate_key(bit_length=256))

    def seal(self, plaintext: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._cipher.encrypt(nonce, plaintext, _PROCESS_AAD)

    def unseal(self, sealed: bytes) -> bytes:
        return self._cipher.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _PROCESS_AAD)


PROCESS_SEALER = ProcessSealer()


def _leaf_key(index: int) -> str:
    return f"leaf_{index:05d}"


def _write_durably(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class CheckpointStore:
    """The checkpoints of one run, sealed by `sealer` (this process's key when None)."""

    def __init__(self, directory: Path, sealer: CheckpointSealer | None = None) -> None:
        self._directory = directory
        self._sealer: CheckpointSealer = sealer or PROCESS_SEALER
        for private in (directory.parent, directory):
            private.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The directory belongs to this job alone, so a step's partial directory here is the
        # remains of a crashed write, never one in progress; a step without a sealed file is an
        # older release's plaintext checkpoint.
        for entry in directory.iterdir():
            step, _, rest = entry.name.partition(".")
            if step.isdigit() and (rest or not (entry / CHECKPOINT_FILE).is_file()):
                _remove(entry)

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing is held open between calls; kept so that a store is a context manager."""

    def steps(self) -> list[int]:
        return sorted(
            int(entry.name)
            for entry in self._directory.iterdir()
            if entry.name.isdigit() and entry.is_dir()
        )

    def save(self, step: int, leaves: Sequence[np.ndarray], layout: Mapping[str, Any]) -> None:
        arrays = {_leaf_key(index): np.asarray(leaf) for index, leaf in enumerate(leaves)}
        arrays[_STEP] = np.asarray(step, np.int64)
        arrays[_LAYOUT] = np.frombuffer(json.dumps(dict(layout)).encode(), np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **arrays)
        sealed = self._sealer.seal(buffer.getvalue())
        del buffer
        partial = self._directory / f"{step}{CHECKPOINT_PARTIAL_SUFFIX}"
        if partial.exists():
            _remove(partial)
        partial.mkdir(mode=0o700)
        _write_durably(partial / CHECKPOINT_FILE, sealed)
        final = self._directory / str(step)
        if final.exists():  # the same step saved again (a resumed run): the new one replaces it
            _remove(final)
        partial.rename(final)
        _sync_directory(self._directory)
        for old in self.steps()[:-KEEP_CHECKPOINTS]:
            _remove(self._directory / str(old))

    def restore_latest(self, template: Sequence[np.ndarray]) -> RestoredCheckpoint | None:
        """The newest checkpoint that restores into the shapes and dtypes of `template`; an
        older one when the newest cannot be read, None when there is none."""
        for step in reversed(self.steps()):
            try:
                restored = self._restore(step, template)
            except Exception:  # any unreadable checkpoint: fall back to the one before
                logger.warning("checkpoint of step %d cannot be restored", step, exc_info=True)
                continue
            return restored
        return None

    def _restore(self, step: int, template: Sequence[np.ndarray]) -> RestoredCheckpoint:
        sealed = (self._directory / str(step) / CHECKPOINT_FILE).read_bytes()
        plaintext = self._sealer.unseal(sealed)
        with np.load(io.BytesIO(plaintext), allow_pickle=False) as archive:
            names = set(archive.files)
            expected = {_leaf_key(index) for index in range(len(template))} | {_STEP, _LAYOUT}
            if names != expected:
                raise ValueError(f"checkpoint holds {len(names) - 2} leaves, not {len(template)}")
            # The step is sealed with the state: a checkpoint copied under another step's name
            # is refused.
            if int(archive[_STEP]) != step:
                raise ValueError(f"checkpoint of step {int(archive[_STEP])} is named {step}")
            leaves = [archive[_leaf_key(index)] for index in range(len(template))]
            layout = json.loads(archive[_LAYOUT].tobytes())
        _check_like(leaves, template)
        return RestoredCheckpoint(step=step, leaves=leaves, layout=layout)


def _check_like(leaves: Sequence[np.ndarray], template: Sequence[np.ndarray]) -> None:
    for leaf, expected in zip(leaves, template, strict=True):
        expected_array = np.asarray(expected)
        if leaf.shape != expected_array.shape or leaf.dtype != expected_array.dtype:
            raise ValueError(
                f"checkpoint leaf {leaf.shape} {leaf.dtype} does not match "
                f"{expected_array.shape} {expected_array.dtype}"
            )
