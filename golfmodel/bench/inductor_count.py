"""Bytes and kernels of a compiled step, read from inductor's own scheduler (no kernel is built or run).

    counts = count_step(step_fn, example_inputs)   # step_fn(*inputs) runs forward + backward once

`step_fn` is compiled with a dynamo backend that runs inductor exactly as `torch.compile` does
(decompositions, the joint-graph partition into forward and backward graphs, post-grad passes,
lowering, fusion and scheduling), asks every scheduled kernel how many bytes it reads and writes
(`BaseSchedulerNode.get_read_write_buffer_accesses`, the count behind
`torch._inductor.metrics.num_bytes_accessed`), and then stops before the kernels are compiled:
the graph runs eagerly instead. That keeps a count of a d 640 block on a 2-core CPU at ~10 s
instead of ~50 s (the C++ build of every kernel dominates a real CPU compile).

The batch dimension of the inputs is marked dynamic, so every size inductor sees is a polynomial
in the batch B; the bytes are evaluated at B = 1 and B = 2, which separates per-sequence traffic
(activations: `per_seq`) from per-call traffic that does not grow with the batch (weights, their
fake-quant and casts, weight gradients: `per_call`). Each kernel is attributed to the module of
the first of its FX origins (forward and backward nodes carry the forward's `nn_module_stack`).

Caveats, stated wherever the numbers are shown: the scheduler is inductor's CPU (C++) backend,
whose fusion rules are the same scheduler as on CUDA but whose reductions are not identical to
Triton's; bytes are inductor's "best case" count (each buffer at most once per kernel).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True, kw_only=True)
class KernelCount:
    """One scheduled kernel: module it came from, extern (a library call: mm, SDPA) or generated, bytes."""

    graph: int  # order of compilation (0 = the first forward)
    backward: bool  # a backward graph (inductor's is_backward)
    module: str  # dotted path of the owning module ("" = the model itself)
    extern: bool
    per_seq: float  # bytes that grow with the batch, per sequence
    per_call: float  # bytes per call that do not grow with the batch (weights)


@dataclass(frozen=True, kw_only=True)
class StepCounts:
    """All kernels of one compiled forward + backward call, and the time inductor took to schedule them."""

    kernels: tuple[KernelCount, ...]
    graphs: int
    lowering_seconds: float  # CPU seconds inductor spent lowering and scheduling (no kernel build)
    seq_len: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def bytes(
        self,
        *,
        extern: bool | None = False,
        prefix: str | None = None,
        graph: int | None = None,
        backward: bool | None = None,
    ) -> tuple[float, float]:
        """(per_seq, per_call) bytes summed over the selected kernels (default: generated kernels only)."""
        sel = [
            k
            for k in self.kernels
            if (extern is None or k.extern == extern)
            and (prefix is None or k.module == prefix or k.module.startswith(prefix + "."))
            and (graph is None or k.graph == graph)
            and (backward is None or k.backward == backward)
        ]
        return sum(k.per_seq for k in sel), sum(k.per_call for k in sel)

    def n_kernels(self, *, prefix: str | None = None) -> int:
        return sum(
            1
            for k in self.kernels
            if prefix is None or k.module == prefix or k.module.startswith(prefix + ".")
        )


class _Counted(Exception):
    """Raised after counting to stop inductor before it builds kernels."""


def _module_of(origins: Sequence[Any], *, backward: bool) -> str:
    """The owning module of a kernel: the outermost module among its FX origins.

    An origin without a module stack is, in the forward, an op of the compiled module's own
    forward (a residual add: the top level, ""); in the backward it is ambiguous (autograd's
    gradient additions carry the call site's trace only), so there the other origins decide.
    """
    paths = []
    for o in origins:
        stack = o.meta.get("nn_module_stack") or o.meta.get("fwd_nn_module_stack")
        if stack:
            paths.append(_clean_path(list(stack.values())[-1][0]))  # "L['self'].mixer.w1" → "mixer.w1"
        elif not backward:
            paths.append("")
    return min(paths, key=lambda p: (p.count(".") if p else -1, p)) if paths else ""


def _clean_path(path: str) -> str:
    """ "L['self'].groups[0][1].mixer" → "groups.0.1.mixer"; "L['self']._orig_mod.x" → "x"."""
    p = path.replace("L['self']", "").replace("['", ".").replace("']", "")
    p = p.replace("[", ".").replace("]", "").replace("_orig_mod.", "").strip(".")
    return p.replace("..", ".")


def _node_bytes_at(graph: Any, batch: int) -> list[tuple[Any, float]]:
    """Bytes of every scheduler node with every free size symbol (the batch) set to `batch`."""
    import sympy

    sv = graph.sizevars

    def hint(expr: Any, fallback: int | None = 0, **_: Any) -> int:
        e = sympy.sympify(expr)
        if e.free_symbols:
            e = e.subs({s: batch for s in e.free_symbols})
        try:
            return int(e)
        except TypeError:
            return int(fallback or 0)

    # torch 2.13 asks `optimization_hint`, older releases (the lent GPU's 2.11 may) `size_hint`
    names = [n for n in ("optimization_hint", "size_hint") if hasattr(sv, n)]
    saved = {n: sv.__dict__.get(n) for n in names}
    for n in names:
        setattr(sv, n, hint)
    try:
        return [
            (
                n,
                float(
                    sum(n.get_read_write_buffer_accesses(include_reads=True, include_writes=True).values())
                ),
            )
            for n in graph.scheduler.nodes
        ]
    finally:
        for n in names:
            if saved[n] is None:
                delattr(sv, n)
            else:
                setattr(sv, n, saved[n])


def _counting_backend(sink: list[list[KernelCount]], timing: list[float]) -> Callable[..., Any]:
    from torch._functorch.aot_autograd import make_boxed_func
    from torch._inductor.compile_fx import compile_fx, compile_fx_inner
    from torch._inductor.graph import GraphLowering
    from torch._inductor.scheduler import NopKernelSchedulerNode
    from torch._inductor.virtualized import V

    state = {"backward": False}

    def count_and_stop(self: GraphLowering) -> Any:
        self.codegen_with_cpp_wrapper() if self.cpp_wrapper else self.codegen()
        g = len(sink)
        with V.set_graph_handler(self):
            at1, at2 = _node_bytes_at(self, 1), _node_bytes_at(self, 2)
        rows = []
        for (node, b1), (_, b2) in zip(at1, at2, strict=True):
            if isinstance(node, NopKernelSchedulerNode):
                continue
            origins = [o for sn in node.get_nodes() if sn.node is not None for o in sn.node.origins]
            rows.append(
                KernelCount(
                    graph=g,
                    backward=state["backward"],
                    module=_module_of(origins, backward=state["backward"]),
                    extern=bool(node.is_extern()),
                    per_seq=b2 - b1,
                    per_call=2 * b1 - b2,
                )
            )
        sink.append(rows)
        raise _Counted

    def inner(gm: torch.fx.GraphModule, example_inputs: Sequence[Any], **kwargs: Any) -> Any:
        state["backward"] = bool(kwargs.get("is_backward", False))
        orig = GraphLowering.compile_to_module
        GraphLowering.compile_to_module = count_and_stop  # type: ignore[method-assign]
        t0 = time.process_time()  # CPU seconds: less sensitive to a shared machine's load than wall time
        try:
            compile_fx_inner(gm, example_inputs, **kwargs)
        except Exception as e:  # inductor wraps errors: look for ours in the chain
            c: BaseException | None = e
            while c is not None and not isinstance(c, _Counted):
                c = c.__cause__ or c.__context__
            if c is None:
                raise
        finally:
            GraphLowering.compile_to_module = orig  # type: ignore[method-assign]
            timing.append(time.process_time() - t0)
        return make_boxed_func(gm.forward)

    def backend(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Any:
        return compile_fx(gm, example_inputs, inner_compile=inner)

    return backend


def count_step(
    model: torch.nn.Module,
    inputs: Sequence[torch.Tensor],
    *,
    seq_len: int,
    autocast_dtype: torch.dtype | None = None,
) -> StepCounts:
    """Count the kernels of one forward (`model(*inputs)`, compiled) and its backward (of `.float().sum()`).

    inputs: tensors whose dim 0 is the batch (at least 2: dynamo specialises sizes 0 and 1);
    autocast_dtype: CPU autocast for the forward (bf16 stands in for the GPU's bf16 autocast).
    Put the loss inside `model` to count it too.
    """
    import contextlib

    import torch._dynamo as dynamo
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    if any(t.dim() == 0 or t.size(0) < 2 for t in inputs):
        raise ValueError("count_step: every input needs a batch dimension (dim 0) of at least 2")
    sink: list[list[KernelCount]] = []
    timing: list[float] = []
    for t in inputs:
        dynamo.mark_dynamic(t, 0)
    compiled = torch.compile(model, backend=_counting_backend(sink, timing))
    amp = (
        torch.autocast("cpu", dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    patches = {"fx_graph_cache": False, "compile_threads": 1}
    with inductor_config.patch(patches), functorch_config.patch(enable_autograd_cache=False):
        dynamo.reset()
        try:
            with amp:
                out = compiled(*inputs)
            out.float().sum().backward()
        finally:
            dynamo.reset()
    kernels = tuple(k for rows in sink for k in rows)
    if not sink or sum(k.per_seq for k in kernels) <= 0:
        raise RuntimeError(
            f"count_step: no per-sequence bytes counted ({len(sink)} graphs): this torch ({torch.__version__}) "
            "lowers differently from the one the counter was written for (2.13)"
        )
    return StepCounts(kernels=kernels, graphs=len(sink), lowering_seconds=sum(timing), seq_len=seq_len)
