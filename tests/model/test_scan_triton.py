"""The fused CfC scan (golfmodel/model/scan_triton.py) against the token-by-token reference.

On a machine without CUDA the kernels run under Triton's interpreter on CPU tensors
(tests/conftest.py sets TRITON_INTERPRET=1 before golfmodel is imported); on a CUDA machine the
same tests run the compiled kernels. The interpreter is slow (a Python call per scanned element),
so most tests shrink the tiles to 8 x 8 (`small_blocks`): the kernel code is the same, and small
T and D then still cover several chunks, partial chunks and partial channel blocks.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton", reason="the fused CfC scan needs triton (installed by the test extra)")

from golfmodel.model import ModelConfig, build_model, scan_triton  # noqa: E402
from golfmodel.model.cfc import CfCMixer, cfc_gates, cfc_scan_reference, resolve_scan, scan_in_use  # noqa: E402
from golfmodel.model.scan_check import main, self_check  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SHAPES = [(1, 8, 8), (2, 21, 12), (3, 5, 3)]  # one exact tile; T and D not multiples of the block; T < block


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """8 x 8 tiles (the op reads the block sizes at each call)."""
    monkeypatch.setattr(scan_triton, "BLOCK_T", 8)
    monkeypatch.setattr(scan_triton, "BLOCK_D", 8)


def _inputs(B: int, T: int, D: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """x = W1 x̂, b = W2 x̂, log Δt over the init range, resets at t = 0 and mid-chunk (t = 3), ∂L/∂h."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=g) * 2
    b = torch.randn(B, T, D, generator=g)
    log_dt = torch.rand(D, generator=g) * math.log(100.0) + math.log(0.01)
    reset = torch.zeros(B, T, dtype=torch.bool)
    reset[0, 0] = True
    reset[-1, min(3, T - 1)] = True
    gh = torch.randn(B, T, D, generator=g)
    return tuple(t.to(DEVICE) for t in (x, b, log_dt, reset, gh))


def _reference(x: torch.Tensor, b: torch.Tensor, log_dt: torch.Tensor, reset: torch.Tensor) -> torch.Tensor:
    log_decay, c = cfc_gates(F.softplus(x.float()), b.float(), torch.exp(log_dt))
    return cfc_scan_reference(log_decay, c, reset)


def _grads(fn, x, b, log_dt, reset, gh) -> tuple[torch.Tensor, ...]:  # type: ignore[no-untyped-def]
    leaves = [t.detach().clone().requires_grad_() for t in (x, b, log_dt)]
    h = fn(*leaves, reset)
    h.backward(gh)
    return (h.detach(), *(t.grad for t in leaves))


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_token_loop(small_blocks: None, shape: tuple[int, int, int]) -> None:
    """h equals the token loop within 1e-5 (fp32), resets at t = 0 and mid-chunk included."""
    x, b, log_dt, reset, _ = _inputs(*shape)
    h = scan_triton.fused_cfc_scan(x, b, log_dt, reset)
    assert h.dtype == torch.float32 and h.shape == shape
    torch.testing.assert_close(h, _reference(x, b, log_dt, reset), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_gradients_match_token_loop(small_blocks: None, shape: tuple[int, int, int]) -> None:
    """∂x (through softplus and the gates), ∂b and ∂log Δt equal autograd through the token loop."""
    x, b, log_dt, reset, gh = _inputs(*shape, seed=1)
    fused = _grads(scan_triton.fused_cfc_scan, x, b, log_dt, reset, gh)
    ref = _grads(_reference, x, b, log_dt, reset, gh)
    for name, f, r in zip(("h", "dx", "db", "dlog_dt"), fused, ref, strict=True):
        torch.testing.assert_close(f, r, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_default_blocks_match_token_loop() -> None:
    """The tile sizes a GPU runs (BLOCK_T x BLOCK_D) give the token loop's h and gradients too."""
    x, b, log_dt, reset, gh = _inputs(1, scan_triton.BLOCK_T + 5, 6, seed=2)
    fused = _grads(scan_triton.fused_cfc_scan, x, b, log_dt, reset, gh)
    ref = _grads(_reference, x, b, log_dt, reset, gh)
    for f, r in zip(fused, ref, strict=True):
        torch.testing.assert_close(f, r, rtol=1e-4, atol=1e-5)


def test_reset_cuts_history_and_gradient(small_blocks: None) -> None:
    """From a mid-chunk BOS on, h ignores earlier tokens, and a loss there sends them no gradient."""
    x, b, log_dt, _, _ = _inputs(1, 20, 5, seed=3)
    reset = torch.zeros(1, 20, dtype=torch.bool, device=DEVICE)
    reset[0, 11] = True  # inside the second 8-token chunk
    x2, b2 = x.clone(), b.clone()
    x2[:, :11] += 3.0
    b2[:, :11] -= 2.0
    h1 = scan_triton.fused_cfc_scan(x, b, log_dt, reset)
    h2 = scan_triton.fused_cfc_scan(x2, b2, log_dt, reset)
    torch.testing.assert_close(h1[:, 11:], h2[:, 11:], rtol=0, atol=0)
    xl, bl = x.clone().requires_grad_(), b.clone().requires_grad_()
    scan_triton.fused_cfc_scan(xl, bl, log_dt, reset)[:, 11:].sum().backward()
    assert xl.grad[:, :11].abs().max() == 0 and bl.grad[:, :11].abs().max() == 0
    assert xl.grad[:, 11:].abs().max() > 0


def test_bf16_inputs_keep_fp32_state(small_blocks: None) -> None:
    """bf16 x, b (as under autocast): h is fp32 and equals the fp32 scan of the same bf16 values;
    their gradients come back in bf16."""
    x, b, log_dt, reset, gh = _inputs(2, 13, 9, seed=4)
    xb, bb = x.bfloat16().requires_grad_(), b.bfloat16().requires_grad_()
    h = scan_triton.fused_cfc_scan(xb, bb, log_dt, reset)
    h.backward(gh)
    assert h.dtype == torch.float32 and xb.grad.dtype == torch.bfloat16 and bb.grad.dtype == torch.bfloat16
    ref = _grads(_reference, xb.detach().float(), bb.detach().float(), log_dt, reset, gh)
    torch.testing.assert_close(h, ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xb.grad.float(), ref[1], rtol=1e-2, atol=1e-2)  # bf16 rounding of ∂x


@pytest.mark.parametrize("in_dtype", [torch.float32, torch.bfloat16])
def test_bf16_h_is_the_fp32_h_rounded(small_blocks: None, in_dtype: torch.dtype) -> None:
    """out_dtype=bf16 stores exactly fused(...).to(bf16): the state stays fp32, only the store rounds."""
    x, b, log_dt, reset, _ = _inputs(2, 21, 12, seed=7)
    x, b = x.to(in_dtype), b.to(in_dtype)
    h32 = scan_triton.fused_cfc_scan(x, b, log_dt, reset)
    h16 = scan_triton.fused_cfc_scan(x, b, log_dt, reset, out_dtype=torch.bfloat16)
    assert h16.dtype == torch.bfloat16
    assert torch.equal(h16.view(torch.int16), h32.to(torch.bfloat16).view(torch.int16))


def test_bf16_grad_h_gives_the_cast_paths_gradients(small_blocks: None) -> None:
    """With bf16 h, ∂L/∂h arrives in bf16: the gradients equal those through fp32 h + a cast, bit for
    bit, and the token loop's within bf16 tolerance."""
    x, b, log_dt, reset, gh = _inputs(2, 13, 9, seed=8)
    xb, bb, ghb = x.bfloat16(), b.bfloat16(), gh.bfloat16()
    direct = _grads(
        lambda *a: scan_triton.fused_cfc_scan(*a, out_dtype=torch.bfloat16), xb, bb, log_dt, reset, ghb
    )
    cast = _grads(lambda *a: scan_triton.fused_cfc_scan(*a).to(torch.bfloat16), xb, bb, log_dt, reset, ghb)
    for name, d, c in zip(("h", "dx", "db", "dlog_dt"), direct, cast, strict=True):
        assert d.dtype == c.dtype and torch.equal(d, c), name
    ref = _grads(_reference, xb.float(), bb.float(), log_dt, reset, ghb.float())
    torch.testing.assert_close(direct[0].float(), ref[0], rtol=1e-2, atol=1e-2)  # h rounded to bf16
    for name, d, r in zip(("dx", "db", "dlog_dt"), direct[1:], ref[1:], strict=True):
        torch.testing.assert_close(d.float(), r, rtol=1e-2, atol=1e-2, msg=lambda m, n=name: f"{n}: {m}")


def test_fake_impl_returns_h_in_out_dtype() -> None:
    """Traced with fake tensors, the forward op gives h in out_dtype (ckpt fp32) and the backward ∂x, ∂b in x's dtype."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(2, 40, 8, dtype=torch.bfloat16)
        reset = torch.zeros(2, 40, dtype=torch.uint8)
        log_dt = torch.empty(8)
        h, ckpt = torch.ops.golf.cfc_scan_fwd(x, x, log_dt, reset, torch.bfloat16)
        dx, db, dld = torch.ops.golf.cfc_scan_bwd(x, x, log_dt, reset, ckpt, h)
    assert (h.dtype, h.shape) == (torch.bfloat16, (2, 40, 8))
    assert ckpt.dtype == torch.float32 and ckpt.shape == (2, math.ceil(40 / scan_triton.BLOCK_T), 8)
    assert (dx.dtype, db.dtype, dld.dtype, dld.shape) == (torch.bfloat16, torch.bfloat16, torch.float32, (8,))


def test_out_dtype_must_be_a_float_dtype() -> None:
    """A non-float out_dtype is refused before any launch, with an error naming out_dtype."""
    x, b, log_dt, reset, _ = _inputs(1, 4, 2)
    with pytest.raises(ValueError, match="out_dtype"):
        scan_triton.fused_cfc_scan(x, b, log_dt, reset, out_dtype=torch.int32)


def test_mixer_under_autocast_equals_the_cast_path(
    small_blocks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under bf16 autocast the mixer's bf16 h gives the output and gradients of fp32 h cast at W_out."""
    torch.manual_seed(0)
    mixer = CfCMixer(12, chunk=4, scan="triton").to(DEVICE)
    with torch.no_grad():
        mixer.w_out.weight.normal_(std=0.3)
    x, _, _, reset, _ = _inputs(2, 10, 12, seed=9)
    asked, fused = [], scan_triton.fused_cfc_scan
    monkeypatch.setattr(
        scan_triton,
        "fused_cfc_scan",
        lambda *a, out_dtype: asked.append(out_dtype) or fused(*a, out_dtype=out_dtype),
    )
    outs = []
    for old in (False, True):
        if old:  # the fp32 h of before, which W_out's autocast cast rounded
            monkeypatch.setattr(CfCMixer, "_h_dtype", lambda self, x: x.dtype)
        mixer.zero_grad(set_to_none=True)
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
            y = mixer(x, reset)
        (y.float() ** 2).sum().backward()
        outs.append((y.detach(), mixer.w1.weight.grad, mixer.w2.weight.grad, mixer.log_dt.grad))
    assert asked == [torch.bfloat16, torch.float32]  # bf16 h now, fp32 h + autocast's cast before
    for new, old in zip(*outs, strict=True):
        assert new.dtype == old.dtype and torch.equal(new, old)


def test_mixer_triton_scan_equals_torch_scan(small_blocks: None) -> None:
    """CfCMixer with scan='triton' gives the chunked torch scan's output and weight gradients."""
    torch.manual_seed(0)
    ref = CfCMixer(12, chunk=4, scan="torch").to(DEVICE)
    with torch.no_grad():
        ref.w_out.weight.normal_(std=0.3)
    fused = CfCMixer(12, chunk=4, scan="triton").to(DEVICE)
    fused.load_state_dict(ref.state_dict())
    x, _, _, reset, _ = _inputs(2, 10, 12, seed=5)
    outs = []
    for m in (ref, fused):
        y = m(x, reset)
        (y**2).sum().backward()
        outs.append((y.detach(), m.w1.weight.grad, m.log_dt.grad))
    for r, f in zip(*outs, strict=True):
        torch.testing.assert_close(f, r, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("autocast", [False, True])
def test_compiled_fullgraph_matches_eager(small_blocks: None, autocast: bool) -> None:
    """torch.compile(fullgraph=True) traces the fused mixer without a graph break, same output (and
    under bf16 autocast, where the mixer asks for the autocast dtype)."""
    torch.manual_seed(0)
    mixer = CfCMixer(8, chunk=4, scan="triton").to(DEVICE)
    with torch.no_grad():
        mixer.w_out.weight.normal_(std=0.3)
    x, _, _, reset, _ = _inputs(1, 12, 8, seed=6)
    backend = "inductor" if DEVICE.type == "cuda" else "eager"  # the interpreter's kernels trace only eagerly
    torch._dynamo.reset()
    compiled = torch.compile(mixer, backend=backend, fullgraph=True)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=autocast):
        got, want = compiled(x, reset), mixer(x, reset)
    assert got.dtype == (torch.bfloat16 if autocast else torch.float32)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_auto_picks_triton_on_cuda_only() -> None:
    """'auto' resolves to the fused scan on CUDA and the torch scan on CPU; forced choices stay."""
    assert resolve_scan("auto", torch.device("cuda")) == "triton"
    assert resolve_scan("auto", torch.device("cpu")) == "torch"
    assert resolve_scan("torch", torch.device("cuda")) == "torch"
    assert resolve_scan("triton", torch.device("cpu")) == "triton"


def test_module_imports_without_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where triton cannot be imported, scan_triton still imports and says why the fused scan is off."""
    import importlib.util

    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now raises ImportError
    monkeypatch.delitem(sys.modules, "golfmodel.model.scan_kernels")
    monkeypatch.delattr(sys.modules["golfmodel.model"], "scan_kernels")  # so the import runs again
    spec = importlib.util.spec_from_file_location("scan_triton_without_triton", scan_triton.__file__)
    probe = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, probe)  # dataclasses look their module up there
    spec.loader.exec_module(probe)
    assert not probe.available() and "triton" in probe.unavailable_reason()
    assert probe.scan_traffic_bytes(1, 64, 32).total_bytes > 0  # the cost model needs no triton


def test_forced_triton_is_never_downgraded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a usable fused scan, 'auto' falls back to torch but a forced 'triton' raises at construction."""
    monkeypatch.setattr(scan_triton, "available", lambda: False)
    monkeypatch.setattr(scan_triton, "unavailable_reason", lambda: "triton is not importable (test)")
    assert resolve_scan("auto", torch.device("cuda")) == "torch"
    with pytest.raises(RuntimeError, match="triton is not importable"):
        CfCMixer(8, scan="triton")


def test_model_with_fused_scan_equals_torch_scan(small_blocks: None) -> None:
    """A q2-geode model with cfc_scan='triton' gives the logits of cfc_scan='torch' (BOS resets from the tokens)."""
    common = dict(vocab_size=64, d_model=16, depth=1, pattern="GC", n_heads=2, n_kv_heads=1, mlp_mult=2.0)
    torch.manual_seed(0)
    ref = build_model(ModelConfig(arm="q2-geode", cfc_scan="torch", **common)).to(DEVICE)
    for m in ref.modules():
        if isinstance(m, torch.nn.Linear) and getattr(m, "_zero_init", False):
            torch.nn.init.normal_(m.weight, std=0.2)  # let the blocks mix (zero init is the identity)
    fused = build_model(ModelConfig(arm="q2-geode", cfc_scan="triton", **common)).to(DEVICE)
    fused.load_state_dict(ref.state_dict())
    idx = torch.randint(4, 64, (2, 19), generator=torch.Generator().manual_seed(0)).to(DEVICE)
    idx[0, 0] = idx[1, 9] = 1  # BOS at the start and mid-chunk
    torch.testing.assert_close(fused(idx), ref(idx), rtol=1e-5, atol=1e-5)


def test_scan_in_use_names_the_scan() -> None:
    """scan_in_use reports the scan a model's CfC blocks run, and 'none' for a model without them."""
    common = dict(vocab_size=64, d_model=32, depth=1, n_heads=4, n_kv_heads=2, mlp_mult=2.0, max_seq_len=16)
    q2 = build_model(ModelConfig(arm="q2-geode", pattern="GC", **common))
    forced = build_model(ModelConfig(arm="q2-geode", pattern="GC", cfc_scan="triton", **common))
    gpt = build_model(ModelConfig(arm="gpt-int8", **common))
    assert scan_in_use(q2, torch.device("cpu")) == "torch"
    assert scan_in_use(q2, torch.device("cuda")) == "triton"
    assert scan_in_use(forced, torch.device("cpu")) == "triton"
    assert scan_in_use(gpt, torch.device("cuda")) == "none"


def test_config_rejects_unknown_scan() -> None:
    """ModelConfig.cfc_scan accepts auto/torch/triton only, and the error names the field."""
    with pytest.raises(ValueError, match="cfc_scan"):
        ModelConfig(arm="q2-geode", vocab_size=64, d_model=32, depth=1, n_heads=4, n_kv_heads=2, mlp_mult=2.0,
                    cfc_scan="cuda")  # fmt: skip


@pytest.mark.skipif(DEVICE.type == "cuda", reason="CPU tensors only reach the guard off CUDA")
def test_cpu_tensors_without_interpreter_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled (non-interpreted) kernels refuse CPU tensors with an error naming TRITON_INTERPRET."""
    monkeypatch.setattr(scan_triton, "interpreted", lambda: False)
    x, b, log_dt, reset, _ = _inputs(1, 4, 2)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        scan_triton.fused_cfc_scan(x, b, log_dt, reset)


def test_traffic_is_within_the_contract() -> None:
    """At the h100x8 per-rank shape the fused scan moves ~4 fp32 passes (bf16 I/O and h) and ≤ 10 in fp32."""
    bf16 = scan_triton.scan_traffic_bytes(64, 1024, 576, io_bytes=2)
    fp32 = scan_triton.scan_traffic_bytes(64, 1024, 576, io_bytes=4)
    n = 64 * 1024 * 576
    assert bf16.forward_bytes >= (2 * 2 + 2) * n and bf16.backward_bytes >= (4 * 2 + 2) * n
    assert 4.0 <= bf16.fp32_passes < 4.2 and 8.0 <= fp32.fp32_passes < 8.3


def test_traffic_counts_h_in_its_own_dtype() -> None:
    """h_bytes=4 (fp32 h after bf16 inputs) adds 2 bytes per element forward (h) and backward (∂L/∂h)."""
    bf16_h = scan_triton.scan_traffic_bytes(64, 1024, 576, io_bytes=2)
    fp32_h = scan_triton.scan_traffic_bytes(64, 1024, 576, io_bytes=2, h_bytes=4)
    n = 64 * 1024 * 576
    assert fp32_h.forward_bytes - bf16_h.forward_bytes == 2 * n
    assert fp32_h.backward_bytes - bf16_h.backward_bytes == 2 * n


def test_self_check_passes_at_toy_size(small_blocks: None) -> None:
    """self_check (golf doctor gpu's entry) reports small errors and timings at a toy shape."""
    report = self_check(1, 12, 4, device=DEVICE, repeats=1)
    assert report["ok"] is True
    assert report["max_abs_err_h"] < 1e-5 and report["max_abs_err_dlog_dt"] < 1e-4
    assert report["max_abs_err_h_bf16"] == 0.0  # the bf16 store rounds as torch's cast
    assert report["fused_fwd_bwd_ms"] > 0 and report["shape"] == [1, 12, 4]


_GPU_BUILD = """
import json, torch, triton
from triton.backends.compiler import GPUTarget
from golfmodel.model import scan_kernels as k
from golfmodel.model.scan_check import compile_for_gpu

report = compile_for_gpu(90)


class Hopper:  # inductor's mutation analysis asks the active driver for its target; there is no GPU here
    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)


try:
    from torch._higher_order_ops.triton_kernel_wrap import identify_accessed_tensors
except ImportError:  # a torch without this analysis: nothing to check
    identify_accessed_tensors = None
if identify_accessed_tensors is not None:
    triton.runtime.driver.set_active(Hopper())
    B, T, D = 2, 64, 32
    bf, f32, u8 = (lambda *s, dt=dt: torch.empty(*s, dtype=dt) for dt in (torch.bfloat16, torch.float32, torch.uint8))
    common = dict(x_ptr=bf(B, T, D), b_ptr=bf(B, T, D), logdt_ptr=f32(D), reset_ptr=u8(B, T), ckpt_ptr=f32(B, 2, D),
                  T=T, D=D, BLOCK_T=32, BLOCK_D=32)
    for name, fn, out in (("forward", k.cfc_scan_fwd_kernel, dict(h_ptr=bf(B, T, D))),
                          ("backward", k.cfc_scan_bwd_kernel, dict(gh_ptr=bf(B, T, D), dx_ptr=bf(B, T, D),
                                                                   db_ptr=bf(B, T, D), dlogdt_ptr=f32(B, D)))):
        acc = identify_accessed_tensors(fn, {**common, **out}, {})
        report[name]["writes"] = sorted(d.name for d in acc.read_writes.writes)
print(json.dumps(report))
"""


def test_kernels_build_for_hopper_and_write_only_outputs() -> None:
    """Triton's compiler (not the interpreter) builds both kernels for sm_90 through ptxas, no GPU needed,
    and inductor's mutation analysis sees them write only their outputs (so it never clones x or b).

    A fresh process without TRITON_INTERPRET, so `triton.jit` makes compiled kernels."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-c", _GPU_BUILD], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["forward"]["num_warps"] == scan_triton.FWD_WARPS
    assert report["backward"]["num_warps"] == scan_triton.BWD_WARPS
    assert report["forward"].get("writes", ["ckpt_ptr", "h_ptr"]) == ["ckpt_ptr", "h_ptr"]
    assert report["backward"].get("writes", ["db_ptr", "dlogdt_ptr", "dx_ptr"]) == [
        "db_ptr",
        "dlogdt_ptr",
        "dx_ptr",
    ]


def test_check_cli_prints_a_table_and_writes_json(small_blocks: None, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """`python -m golfmodel.model.scan_check` prints one table row per check, writes --json, exits 0."""
    out = tmp_path / "scan.json"
    rc = main(["--shape", "1", "9", "3", "--repeats", "1", "--device", str(DEVICE), "--json", str(out)])
    assert rc == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| 8 | 8 |")]
    assert len(lines) == 1
    assert json.loads(out.read_text())[0]["shape"] == [1, 9, 3]
