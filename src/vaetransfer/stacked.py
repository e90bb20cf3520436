"""Train several VAEs of one configuration in one process: "stacked" members that differ only in
``seed`` and/or ``hparam`` (issue "model zoo" §5, for GPUs where one small VAE cannot fill the chip).

The K members' parameters are stacked along a new leading dimension
(:func:`torch.func.stack_module_state`); in vmap mode one forward/backward runs all of them with
:func:`torch.func.vmap` over :func:`torch.func.functional_call` (convolutions become grouped
convolutions, linear layers batched matmuls), and one :class:`torch.optim.Adam` updates the
stacked tensors. Adam is elementwise and the members share their step count, so the stacked Adam
is K separate Adams; the gradient of the summed member losses is each member's own gradient.

Every member gets exactly what :func:`vaetransfer.train.train` would give it alone:

- init from ``_generators(config)[0]`` via ``reset_parameters(generator=...)``;
- noise ``eps`` from its own noise generator, drawn outside vmap with the shape, dtype and order
  of :func:`vaetransfer.models.sample_latent` (then z = mean + exp(0.5 log_var) eps, as there);
- batches from ``epoch_batches(indices, batch_size, np.random.default_rng(config.seed))``;
- the same checkpoint files (:func:`vaetransfer.train.save_checkpoint`, whose ``optimizer`` entry
  is the member's slice of the stacked Adam, loadable into a single model's Adam), the same loss
  log (:class:`vaetransfer.losslog.LossLog`), the same NaN/inf check (:class:`NonFiniteLoss`,
  raised before anything of any member is written at or after the bad step) and, with
  ``resume_dirs``, the same resume states (one :class:`vaetransfer.resume.ResumeDir` per member).

Two modes run the members' forward/backward (``mode``; ``auto`` picks vmap on CUDA, loop elsewhere):

- ``vmap``: one batched pass for all members. Equal to separate runs up to floating-point noise
  (batched kernels sum in another order; tests: gradients at least as close to float64 as
  train_step's, weights after 20 steps within 1 % of their update); the speed-up is on GPUs, where
  one small VAE leaves the chip idle between kernel launches. The objective is vmapped too: with one
  ``hparam`` for all members it is a Python float, as in ``train``; with different ones a per-member
  tensor, unless the objective branches on its value (annealed VAE's ``min``): then the loss is
  vmapped per group of equal hparam.
- ``loop``: the members one after another with exactly train_step's operations and tensors, so
  each member is bitwise equal to ``train`` on CPU (same thread count); only Adam is shared. On
  CPU it is as fast as separate runs (vmap is slower there: grouped convolutions).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm import tqdm

import vaetransfer.models as models_mod
from vaetransfer import train as train_mod
from vaetransfer.losslog import LossLog, kl_columns, kl_per_dimension, log_columns
from vaetransfer.models import VAEOutput, images_to_tensor
from vaetransfer.objectives import logged_terms, objective_terms
from vaetransfer.resume import ResumeDir, StopRequested, stop_on_signals
from vaetransfer.runtime import keep_freed_memory
from vaetransfer.train import TrainConfig, _check_inputs, _generators, epoch_batches, save_checkpoint

_logger = logging.getLogger(__name__)
_HOST_EVERY = getattr(train_mod, "_HOST_EVERY", 200)
#: Fields in which members may differ; every other TrainConfig field must be equal.
MEMBER_FIELDS = ("seed", "hparam")
#: How the members' forward/backward runs: vmap (one batched pass), loop (one member after another,
#: bitwise equal to ``train`` on CPU), auto (vmap on CUDA, loop elsewhere).
MODES = ("auto", "vmap", "loop")


def check_stackable(configs: Sequence[TrainConfig]) -> None:
    """Raise ValueError unless ``configs`` differ only in :data:`MEMBER_FIELDS` (naming the field)."""
    if not configs:
        raise ValueError("train_stacked needs at least one config")
    first = configs[0]
    if first.fastpath:
        raise ValueError("field 'fastpath'=True: stacked training runs the plain model (vmap); use fastpath=False")
    if not models_mod.is_vae(first.architecture):
        raise ValueError(f"field 'architecture'={first.architecture!r}: stacked training is for VAEs only")
    for i, cfg in enumerate(configs):
        if type(cfg) is not type(first):
            raise ValueError(f"configs[{i}] is a {type(cfg).__name__}, configs[0] a {type(first).__name__}")
        for f in dataclasses.fields(first):
            if f.name not in MEMBER_FIELDS and getattr(cfg, f.name) != getattr(first, f.name):
                raise ValueError(
                    f"configs cannot be stacked: field {f.name!r} differs "
                    f"(configs[0].{f.name}={getattr(first, f.name)!r}, configs[{i}].{f.name}="
                    f"{getattr(cfg, f.name)!r}); members may differ only in {list(MEMBER_FIELDS)}"
                )


def new_model(config: TrainConfig) -> nn.Module:
    """The untrained VAE ``train`` builds for ``config`` (before its seeded initialisation)."""
    return models_mod.build_model(config.architecture, channels=config.channels, latent_dim=config.latent_dim)


class _EncodeDecode(nn.Module):
    """``vae``'s forward pass with the noise passed in (so it can be drawn outside vmap)."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: Tensor, eps: Tensor) -> VAEOutput:
        mean, log_var = self.vae.encode(x)
        z = mean + torch.exp(0.5 * log_var) * eps  # exactly vaetransfer.models.sample_latent
        return VAEOutput(mean=mean, log_var=log_var, z=z, logits=self.vae.decode(z))


class MemberOptimizer:
    """Member ``k``'s view of the stacked Adam: ``state_dict()`` is what a single model's Adam
    (built on ``model.parameters()``, same hyper-parameters) would return, and loads into one."""

    def __init__(self, optimizer: torch.optim.Optimizer, k: int) -> None:
        self.optimizer, self.k = optimizer, k

    def state_dict(self) -> dict[str, Any]:
        full = self.optimizer.state_dict()
        state = {
            i: {name: (v[self.k] if v.dim() > 0 else v).clone() for name, v in entry.items()}
            for i, entry in full["state"].items()
        }
        return {"state": state, "param_groups": copy.deepcopy(full["param_groups"])}


class StackedModels:
    """K members' stacked parameters, their Adam, and one training step for all of them."""

    def __init__(self, configs: Sequence[TrainConfig],
                 model_factory: Callable[[TrainConfig], nn.Module] = new_model, mode: str = "auto") -> None:
        check_stackable(configs)
        self.configs, first = list(configs), configs[0]
        self.device = torch.device(first.device)
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}; valid: {list(MODES)}")
        self.mode = mode if mode != "auto" else ("vmap" if self.device.type == "cuda" else "loop")
        self.models, self.noise = [], []
        for cfg in self.configs:
            init_gen, noise_gen = _generators(cfg)
            model = model_factory(cfg)
            model.reset_parameters(generator=init_gen)
            self.models.append(model.to(self.device).train())
            self.noise.append(noise_gen)
        self.params, self.buffers = stack_module_state(self.models)
        self.base = _EncodeDecode(copy.deepcopy(self.models[0]).to("meta"))
        self.optimizer = torch.optim.Adam(self.params.values(), lr=first.lr, betas=(0.9, 0.999), eps=1e-8)
        hparams = [cfg.hparam for cfg in self.configs]
        groups = {h: [k for k, v in enumerate(hparams) if v == h] for h in dict.fromkeys(hparams)}
        # Loss per group of equal hparam (a Python float, as train() passes it), or one vmap with a
        # per-member hparam tensor ("tensor", tried first when hparams differ).
        self.loss_mode = "groups" if len(groups) == 1 else "tensor"
        self.hparam_tensor = torch.tensor(hparams, dtype=torch.float32, device=self.device)
        self.hparam_groups = [(h, torch.tensor(m, device=self.device)) for h, m in groups.items()]
        order = [k for m in groups.values() for k in m]
        self.ungroup = torch.tensor(np.argsort(order), device=self.device)

    def _forward(self, params, buffers, x, eps) -> VAEOutput:
        state = {f"vae.{name}": t for name, t in {**params, **buffers}.items()}
        return functional_call(self.base, state, (x, eps))

    def _losses(self, out: VAEOutput, x: Tensor, x_dim: int | None, step: int):
        """Per-member (loss (K,), terms {name: (K,)}) of the shared objective."""
        first = self.configs[0]

        def terms(o, xb, h):
            return objective_terms(first.objective, h, VAEOutput(*o), xb, step, first.objective_options)

        if self.loss_mode == "tensor":
            try:
                return vmap(terms, in_dims=(0, x_dim, 0))(tuple(out), x, self.hparam_tensor)
            except RuntimeError as exc:  # e.g. `min(c_max, ...)` on a per-member tensor
                if "vmap" not in str(exc):
                    raise
                _logger.info("objective %s not vmappable over hparam (%s); grouping members by hparam",
                             first.objective, str(exc).splitlines()[0])
                self.loss_mode = "groups"
        if len(self.hparam_groups) == 1:
            return vmap(terms, in_dims=(0, x_dim, None))(tuple(out), x, self.hparam_groups[0][0])
        parts = [vmap(terms, in_dims=(0, x_dim, None))(
                     tuple(t.index_select(0, idx) for t in out), x if x_dim is None else x.index_select(0, idx), h)
                 for h, idx in self.hparam_groups]
        loss = torch.cat([p[0] for p in parts]).index_select(0, self.ungroup)
        logged = {name: torch.cat([p[1][name] for p in parts]).index_select(0, self.ungroup) for name in parts[0][1]}
        return loss, logged

    def inputs(self, batches: Sequence[np.ndarray]) -> tuple[Any, int | None]:
        """``(x, x_dim)`` for :meth:`compute_gradients` from uint8 batches (N, 64, 64, C): one
        per member, or a single one that all members share (then ``x_dim`` is None)."""
        k_members = len(self.configs)
        if self.mode == "loop":  # exactly train()'s tensors (layout included: it picks the kernels)
            xs = [images_to_tensor(b, self.device) for b in batches]
            return (xs * k_members if len(xs) == 1 else xs), 0
        raw = torch.from_numpy(np.concatenate(batches))  # (B·N, 64, 64, C)
        if self.device.type == "cuda":  # pinned + async copy: the host keeps queueing kernels
            raw = raw.pin_memory().to(self.device, non_blocking=True)
        else:
            raw = raw.to(self.device)
        x = raw.permute(0, 3, 1, 2).to(torch.float32).div_(255.0).contiguous()  # as images_to_tensor
        return (x, None) if len(batches) == 1 else (x.view(len(batches), -1, *x.shape[1:]), 0)

    def compute_gradients(self, x: Tensor, x_dim: int | None, step: int) -> list[dict[str, Tensor]]:
        """Forward and backward of every member on ``x`` (from :meth:`inputs`: member k's batch is
        ``x[k]``, or ``x`` itself for all when ``x_dim`` is None), leaving the gradients in the
        stacked parameters' ``.grad``; ``step`` = updates already done. Returns each member's
        detached logged terms (train_step's)."""
        k_members, latent = len(self.configs), self.configs[0].latent_dim
        n = (x[0] if x_dim == 0 else x).shape[0]
        eps = [torch.randn((n, latent), generator=g, device=self.device, dtype=torch.float32) for g in self.noise]
        self.optimizer.zero_grad(set_to_none=True)
        if self.mode == "loop":
            return [self._member_gradients(k, x if x_dim is None else x[k], eps[k], step) for k in range(k_members)]
        out = vmap(self._forward, in_dims=(0, 0, x_dim, 0))(self.params, self.buffers, x, torch.stack(eps))
        loss, terms = self._losses(out, x, x_dim, step)
        kl_dims = vmap(kl_per_dimension)(out.mean.detach(), out.log_var.detach())
        loss.sum().backward()  # members are independent: each gets its own loss's gradient
        columns = kl_columns(latent)
        return [{**{name: t[k] for name, t in terms.items()}, **dict(zip(columns, kl_dims[k].unbind()))}
                for k in range(k_members)]

    def _member_gradients(self, k: int, x: Tensor, eps: Tensor, step: int) -> dict[str, Tensor]:
        """Loop mode: member k alone, with exactly train_step's operations (bitwise equal on CPU)."""
        cfg = self.configs[k]
        out = self._forward({n: t[k] for n, t in self.params.items()}, {n: t[k] for n, t in self.buffers.items()},
                            x, eps)
        loss, terms = objective_terms(cfg.objective, cfg.hparam, out, x, step, cfg.objective_options)
        kl_dims = kl_per_dimension(out.mean.detach(), out.log_var.detach())
        terms.update(zip(kl_columns(len(kl_dims)), kl_dims.unbind()))
        loss.backward()
        return terms

    def step(self, x: Tensor, x_dim: int | None, step: int) -> list[dict[str, Tensor]]:
        """One Adam update of every member (:meth:`compute_gradients`, then the stacked Adam)."""
        terms = self.compute_gradients(x, x_dim, step)
        self.optimizer.step()
        return terms

    def member(self, k: int) -> tuple[nn.Module, MemberOptimizer]:
        """Member k as a standalone model (its weights copied in now) and its optimizer view."""
        model = self.models[k]
        with torch.no_grad():
            for name, t in [*model.named_parameters(), *model.named_buffers()]:
                t.copy_((self.params if name in self.params else self.buffers)[name][k])
        return model, MemberOptimizer(self.optimizer, k)

    def load_member_states(self, states: Sequence[Mapping[str, Any]]) -> None:
        """Put each member's saved ``state_dict``/``optimizer`` (single-model format) into the stack."""
        with torch.no_grad():
            for name, t in {**self.params, **self.buffers}.items():
                t.copy_(torch.stack([s["state_dict"][name] for s in states]))
        optimizers = [s["optimizer"] for s in states]
        stacked = {i: {name: v if v.dim() == 0 else torch.stack([o["state"][i][name] for o in optimizers])
                       for name, v in entry.items()}
                   for i, entry in optimizers[0]["state"].items()}
        self.optimizer.load_state_dict({"state": stacked, "param_groups": optimizers[0]["param_groups"]})


class _Batches:
    """Each member's batch stream, as ``train`` draws it; one shared stream when all are equal."""

    def __init__(self, configs: Sequence[TrainConfig], indices: Sequence[np.ndarray]) -> None:
        shared = all(c.seed == configs[0].seed and np.array_equal(i, indices[0]) for c, i in zip(configs, indices))
        members = [0] if shared else range(len(configs))
        self.streams = [epoch_batches(indices[k], configs[k].batch_size, np.random.default_rng(configs[k].seed))
                        for k in members]

    def skip(self, n: int) -> None:
        for stream in self.streams:
            for _ in range(n):
                next(stream)

    def next(self, images: np.ndarray) -> list[np.ndarray]:
        """The next batch of every stream: uint8 (N, 64, 64, C) each."""
        return [images[next(s)] for s in self.streams]


def train_stacked(
    configs: Sequence[TrainConfig],
    images: np.ndarray,
    train_indices: Sequence[Any],
    checkpoint_paths: Sequence[Mapping[int, str | Path]],
    loss_log_paths: Sequence[str | Path],
    progress: bool = True,
    threads: int | None = None,
    resume_dirs: Sequence[str | Path] | None = None,
    save_every: int | None = None,
    model_factory: Callable[[TrainConfig], nn.Module] = new_model,
    mode: str = "auto",
) -> None:
    """Train K = ``len(configs)`` members, differing only in seed and/or hparam, in one process.

    Argument k of each list is member k's argument of :func:`vaetransfer.train.train` (``images``,
    ``progress``, ``threads`` and ``save_every`` are shared); each member gets the checkpoints,
    loss log and resume state ``train`` would write for it, up to floating-point noise. Configs
    that differ in any other field raise ValueError naming it. A NaN/inf term of any member raises
    its :class:`NonFiniteLoss` (with a note naming the member) before anything is written at or
    after the bad step; a stop signal saves every member's resume state, then raises StopRequested.
    """
    configs = list(configs)
    check_stackable(configs)
    k_members = len(configs)
    lists = {"train_indices": train_indices, "checkpoint_paths": checkpoint_paths, "loss_log_paths": loss_log_paths}
    if resume_dirs is not None:
        lists["resume_dirs"] = resume_dirs
    for name, values in lists.items():
        if len(values) != k_members:
            raise ValueError(f"{name} has {len(values)} entries for {k_members} configs")
    outputs = [str(p) for paths in checkpoint_paths for p in paths.values()] + [str(p) for p in loss_log_paths]
    if len(set(outputs)) != len(outputs):
        raise ValueError("members' checkpoint and loss-log paths must all be distinct")
    if threads is not None:
        torch.set_num_threads(threads)
    keep_freed_memory()
    indices = [_check_inputs(c, images, i, p) for c, i, p in zip(configs, train_indices, checkpoint_paths)]
    first = configs[0]
    stack = StackedModels(configs, model_factory, mode)
    batches = _Batches(configs, indices)
    columns = log_columns(first.objective, first.latent_dim)[1:]
    logs = [LossLog(path, columns, shown=logged_terms(first.objective)) for path in loss_log_paths]
    resumes = [ResumeDir(d) for d in resume_dirs] if resume_dirs is not None else None
    done = _restore(resumes, stack, logs, checkpoint_paths)
    batches.skip(done)
    seeds = ",".join(str(c.seed) for c in configs)
    hparams = ",".join(dict.fromkeys(f"{c.hparam:g}" for c in configs))
    bar = tqdm(
        total=first.steps, initial=done, desc=f"train {first.dataset}/{first.objective}={hparams}/seeds {seeds}",
        file=sys.stderr, mininterval=5.0, disable=not progress,
    )

    def to_host() -> None:
        for k, log in enumerate(logs):
            try:
                log.to_host()
            except Exception as exc:
                exc.add_note(f"stacked member {k}: seed {configs[k].seed}, hparam {configs[k].hparam:g}")
                raise

    with bar, stop_on_signals() as stop_signal:
        for step in range(done + 1, first.steps + 1):
            x, x_dim = stack.inputs(batches.next(images))
            terms = stack.step(x, x_dim, step - 1)
            for log, member_terms in zip(logs, terms):
                log.append(step, member_terms)
            if step in first.checkpoint_steps:
                to_host()  # raises NonFiniteLoss before any member's checkpoint at or after a bad step
                for k in range(k_members):
                    model, optimizer = stack.member(k)
                    save_checkpoint(checkpoint_paths[k][step], model, optimizer, step, configs[k])
                    logs[k].flush()
                    if resumes is not None:
                        resumes[k].keep_checkpoint(checkpoint_paths[k][step])
            if step % _HOST_EVERY == 0:
                to_host()
                bar.set_postfix(loss=" ".join(f"{log.last('loss'):.2f}" for log in logs), refresh=False)
            bar.update()
            if resumes is not None and step < first.steps:
                signum = stop_signal()
                if signum is not None or (save_every and step % save_every == 0):
                    to_host()
                    for k in range(k_members):
                        model, optimizer = stack.member(k)
                        resumes[k].save(step, configs[k].to_dict(), model, optimizer, stack.noise[k], logs[k].rows())
                if signum is not None:
                    raise StopRequested(f"stopped by signal {signum} after step {step}; state saved in "
                                        f"{', '.join(str(r.path) for r in resumes)}")
    to_host()
    for log in logs:
        log.flush()
    for resume in resumes or ():
        resume.clear()


def _restore(resumes, stack: StackedModels, logs, checkpoint_paths) -> int:
    """Load every member's resume state; all must exist at the same step, else start over (0)."""
    if resumes is None:
        return 0
    states = [r.load(c.to_dict()) for r, c in zip(resumes, stack.configs)]
    if any(s is None for s in states):
        if any(s is not None for s in states):
            _logger.warning("only some members have a resume state; starting all over")
        return 0
    steps = {int(s["step"]) for s in states}
    if len(steps) != 1 or any(tuple(s["loss_rows"].get("columns", ())) != log.columns for s, log in zip(states, logs)):
        _logger.warning("members' resume states are at different steps %s or of another version; starting over",
                        sorted(steps))
        return 0
    stack.load_member_states(states)
    for k, state in enumerate(states):
        stack.noise[k].set_state(state["noise_generator"])
        logs[k].restore(state["loss_rows"])
        resumes[k].restore_checkpoints(checkpoint_paths[k], int(state["step"]))
    return steps.pop()
