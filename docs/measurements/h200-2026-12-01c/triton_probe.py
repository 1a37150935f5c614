"""Device probe for the Triton backend: host cost of one forward+backward (cProfile) and the
kernels' GPU time under launch settings (CUDA events), beside the CUDA kernel and clone."""
import cProfile, itertools, pstats, sys, time
import torch
from katbench.ops import triton_backend as tb, group_rational
from katbench.ops import load_kernels

def gpu_ms(fn, iters=50):
    fn(); torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(iters): fn()
    e.record(); torch.cuda.synchronize()
    return s.elapsed_time(e) / iters

def host_us(fn, iters=300):
    fn(); torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters): fn()
    h = (time.perf_counter() - t) / iters * 1e6
    torch.cuda.synchronize()
    return h

def inputs(shape, dtype, g=8):
    x = torch.randn(*shape, device="cuda", dtype=dtype)
    n = torch.randn(1, 6, device="cuda") * 0.3; d = torch.randn(g, 4, device="cuda") * 0.3
    return x, n, d

print(load_kernels(), flush=True)
x, n, d = inputs((128, 197, 768), torch.bfloat16)
gy = torch.randn_like(x)
f = lambda: tb.group_rational_triton(x, n, d)
b = lambda: tb.group_rational_backward_triton(gy, x, n, d)
print(f"host us/call (launch loop, no sync): fwd {host_us(f):.1f}  bwd {host_us(b):.1f}  "
      f"get_device_properties {host_us(lambda: torch.cuda.get_device_properties(x.device)):.2f}  "
      f"_Problem {host_us(lambda: tb._Problem(x, n, d, 'sum_abs', None)):.1f}", flush=True)
xr = x.detach().requires_grad_(); nr = n.clone().requires_grad_(); dr = d.clone().requires_grad_()
def fb():
    y = group_rational(xr, nr, dr); y.backward(gy)
backend = load_kernels()["cuda"]
print(f"host us op fwd+bwd through autograd ({backend}): {host_us(fb, 200):.1f}; "
      f"GPU ms {gpu_ms(fb):.4f}", flush=True)
if backend == "triton":
    pr = cProfile.Profile(); pr.enable()
    for _ in range(200): fb()
    torch.cuda.synchronize(); pr.disable()
    pstats.Stats(pr).sort_stats("tottime").print_stats(25)
if sys.argv[1:] == ["host"]:
    sys.exit(0)
print("GPU ms per call: shape dtype | settings | fwd bwd (bwd = backward + reduce)", flush=True)
base = dict(NUM_WARPS=tb.NUM_WARPS, FORWARD_PACKS_PER_THREAD=tb.FORWARD_PACKS_PER_THREAD,
            BACKWARD_UNROLL=tb.BACKWARD_UNROLL, BACKWARD_PROGRAMS_PER_SM=tb.BACKWARD_PROGRAMS_PER_SM)
variants = [{}]
variants += [{"NUM_WARPS": w} for w in (2, 8)]
variants += [{"FORWARD_PACKS_PER_THREAD": p} for p in (1, 4, 8)]
variants += [{"BACKWARD_UNROLL": u} for u in (1, 4)]
variants += [{"BACKWARD_PROGRAMS_PER_SM": s} for s in (2, 8, 16)]
variants += [{"NUM_WARPS": 8, "FORWARD_PACKS_PER_THREAD": 4}, {"NUM_WARPS": 8, "BACKWARD_PROGRAMS_PER_SM": 2}]
for shape, dtype in [((64, 1000, 512), torch.float32), ((64, 1000, 512), torch.bfloat16),
                     ((128, 197, 768), torch.bfloat16), ((128, 197, 3072), torch.bfloat16)]:
    x, n, d = inputs(shape, dtype); gy = torch.randn_like(x)
    from katbench.ops import _OPS  # noqa
    cf = gpu_ms(lambda: torch.ops.katbench.group_rational(x, n, d, "sum_abs", None))
    cb = gpu_ms(lambda: torch.ops.katbench.group_rational_backward(gy, x, n, d, "sum_abs", None, False))
    cl = gpu_ms(lambda: x.clone())
    print(f"{shape} {dtype} | CUDA kernel | {cf:.4f} {cb:.4f} | clone {cl:.4f}", flush=True)
    for v in variants:
        for k, val in {**base, **v}.items(): setattr(tb, k, val)
        try:
            tf = gpu_ms(lambda: tb.group_rational_triton(x, n, d))
            tbw = gpu_ms(lambda: tb.group_rational_backward_triton(gy, x, n, d))
            print(f"{shape} {dtype} | {v or 'default'} | {tf:.4f} {tbw:.4f} | fwd/clone {tf/cl:.2f} "
                  f"bwd/CUDA {tbw/cb:.2f} fwd+bwd/CUDA {(tf+tbw)/(cf+cb):.2f}", flush=True)
        except Exception as e:  # a setting that does not compile
            print(f"{shape} {dtype} | {v} | failed: {type(e).__name__}: {str(e)[:120]}", flush=True)
    for k, val in base.items(): setattr(tb, k, val)
