"""PyTorch's bf16 matmul throughput, measured the way notebook 06 measures candle's.

Same size, dtype, warm-up and iteration count; prints one line in the same format.
"""

import sys
import time

import torch

n = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
iters = int(sys.argv[2]) if len(sys.argv) > 2 else 50
dev = torch.device("cuda:0")
a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
for _ in range(3):
    c = a @ b
torch.cuda.synchronize()
t0 = time.perf_counter()
for _ in range(iters):
    c = a @ b
torch.cuda.synchronize()
secs = time.perf_counter() - t0
tflops = 2.0 * n * n * n * iters / secs / 1e12
print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
print(f"matmul {n}^3 bf16: {tflops} TFLOP/s ({secs} s)")
