"""Intermediate-layer distillation: Patient KD (Sun et al. 2019), `distill --hidden-weight`.

Soft targets pass on only what the teacher's last layer concludes. Patient KD also asks
each student layer but the last to reproduce the [CLS] state of the teacher layer it stands
for: student layer i of S matches teacher layer `kept_layers(T, S)[i]`, the layer it was
initialised from when the student is cut from its teacher (6 -> 3: student layers 0, 1
match teacher layers 1, 3). The last layer is left out because the soft targets already
cover what it feeds the classifier. Both states are scaled to unit length first, so the
term measures direction, not scale:

    loss_layers = beta * mean over rows, matched layers, dims of (s/|s| - t/|t|)^2

which is PKD's code (an element-wise mean, hence its beta of 100 to 500), added to the
soft-target loss of `distillation`. The teacher's states are computed once, before
training, on the teacher's own tokenization of each text (like its soft targets), and kept
in memory as float16 unit vectors: rows x (S - 1) x width, 1.5 KB a row for MiniLM's 3-layer
student. A training row carries its index into them as the last column of its `labels`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from sentitune import console
from sentitune.errors import SentituneError


def matched_layers(teacher_depth: int, student_depth: int) -> list[tuple[int, int]]:
    """(student layer, teacher layer) pairs, the student's last layer left out."""
    from sentitune.model import kept_layers

    if student_depth < 2:
        raise SentituneError("--hidden-weight matches the layers below the student's last; "
                             "this student has 1 layer: keep at least 2 (--student teacher:2) "
                             "or set --hidden-weight 0")
    if student_depth > teacher_depth:
        raise SentituneError(f"--hidden-weight: the student has {student_depth} layers, more "
                             f"than the teacher's {teacher_depth}; give a shallower student")
    return list(enumerate(kept_layers(teacher_depth, student_depth)[:-1]))


def check_matching(teacher: Any, student: str, layers: int | None) -> list[tuple[int, int]]:
    """The pairs `--hidden-weight` will match for `teacher` (a Classifier) and the student
    model `student` cut to `layers`, or one clear error: before any work is done."""
    from sentitune.model import check_classifier_model, hidden_size, layer_count

    if len(teacher.members) > 1:
        raise SentituneError("--hidden-weight takes one teacher (an ensemble's members have "
                             "different inner states); give one run or --hidden-weight 0")
    model = teacher.members[0].backend.model  # distill loads teachers with torch
    config = check_classifier_model(student)
    if config.model_type == "albert":
        raise SentituneError("--hidden-weight: an albert student shares one layer among all "
                             "its layers, so none can match a teacher layer; give a BERT-like "
                             "student or --hidden-weight 0")
    wide, teacher_wide = hidden_size(config), hidden_size(model.config)
    if wide != teacher_wide:
        raise SentituneError(f"--hidden-weight: the student's states are {wide} wide, the "
                             f"teacher's {teacher_wide}; give a student of the teacher's width "
                             "(--student teacher:N) or --hidden-weight 0")
    return matched_layers(layer_count(model.config), layers or layer_count(config))


class StudentStates:
    """Forward hooks on the student's layers that keep the [CLS] state of each matched one
    while the model trains (never in evaluation: validation is ordinary inference)."""

    def __init__(self, layers: Sequence[Any], matched: Sequence[int]) -> None:
        self.captured: dict[int, Any] = {}
        for position, index in enumerate(matched):
            layers[index].register_forward_hook(self._hook(position))
        self.count = len(matched)

    def _hook(self, position: int):
        def keep(module, args, output):
            if module.training:
                states = output[0] if isinstance(output, tuple) else output
                self.captured[position] = states[:, 0]
        return keep

    def take(self):
        """The last training forward pass's states: batch x matched layers x width."""
        import torch

        if len(self.captured) != self.count:
            raise RuntimeError("the student's matched layers did not run in training mode")
        states = torch.stack([self.captured[i] for i in range(self.count)], dim=1)
        self.captured.clear()
        return states


class LayerMatching:
    """The teacher's [CLS] states of every training row and the loss that matches them."""

    def __init__(self, teacher_member: Any, pairs: Sequence[tuple[int, int]],
                 weight: float) -> None:
        self.member = teacher_member
        self.pairs = list(pairs)
        self.weight = weight
        self.student: StudentStates | None = None
        self.targets: np.ndarray | None = None
        self._on_device = None

    def watch(self, student_layers: Sequence[Any]) -> None:
        """Hook the student's matched layers (once it is cut to its depth)."""
        self.student = StudentStates(student_layers, [s for s, _ in self.pairs])

    def compute_targets(self, texts: Sequence[str], batch_size: int,
                        progress: bool = False) -> None:
        """The teacher's unit-length [CLS] states of `texts` at the matched layers."""
        import torch
        import torch.nn.functional as F

        from sentitune.inference.classifier import CPU_MAX_PADDING, length_batches
        from sentitune.model import hidden_size

        member, started = self.member, time.perf_counter()
        backend = member.backend
        console.say(progress, f"the teacher computes the [CLS] states of {len(texts):,} texts "
                              "for layer matching ...")
        ids, type_ids, _ = member.encoder.encode(member.run.preprocess(list(texts)))
        width = hidden_size(backend.model.config)
        out = np.zeros((len(ids), len(self.pairs), width), dtype=np.float16)
        teacher_layers = [t for _, t in self.pairs]
        for picked in length_batches([len(row) for row in ids], batch_size,
                                     CPU_MAX_PADDING if backend.on_cpu else None):
            batch = member.encoder.pad([ids[i] for i in picked], [type_ids[i] for i in picked])
            with torch.inference_mode():
                # hidden_states[0] is the embeddings: layer k's output is [k + 1].
                hidden = backend.forward(batch, output_hidden_states=True).hidden_states
                cls = torch.stack([hidden[k + 1][:, 0] for k in teacher_layers], dim=1)
            out[picked] = F.normalize(cls.float(), dim=-1).cpu().numpy()
        console.say(progress, f"  done ({time.perf_counter() - started:.0f} s)")
        self.targets = out

    def loss(self, rows):
        """beta * the element-wise mean squared error of the unit [CLS] states of `rows`
        (indices into the targets) against the student's from its last forward pass."""
        import torch.nn.functional as F

        student = F.normalize(self.student.take().float(), dim=-1)
        if self._on_device is None or self._on_device.device != student.device:
            import torch

            self._on_device = torch.from_numpy(self.targets).to(student.device)
        teacher = self._on_device[rows.to(self._on_device.device)].float()
        return self.weight * F.mse_loss(student, teacher)

    def record(self) -> dict[str, Any]:
        return {"matched_layers": [list(pair) for pair in self.pairs]}
