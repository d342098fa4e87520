"""Why does a fresh-process AOTI CUDA package load crash on the GPU machine?
Builds a plain nn.Linear package (no torch_fmha) and the FP8 attention block
package, and loads each in a fresh process: as is, and with the compiler's own
libstdc++ preloaded. Also a CPU plain package. Prints what each run did, the
libstdc++ the process maps, and the package .so's dependencies.
Usage: python3 compile_tests/aoti_diag.py OUTDIR (not a test module; run by
tools/gpu_check_all.sh with AOTI_DIAG=1)"""
import glob
import os
import subprocess
import sys
import textwrap
import zipfile

import torch

import torch_fmha  # noqa: F401  (registers the ops for export)
from blocks import AttentionBlock  # compile_tests/blocks.py, next to this script

out = sys.argv[1]
os.makedirs(out, exist_ok=True)


class Plain(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(128, 128)

    def forward(self, x):
        return (self.lin(x).relu(),)


class Dense(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = AttentionBlock(embed=128, heads=4, kv_heads=2, head_dim=128, fp8=True)

    def forward(self, x):
        return (self.dense(x),)


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


print("g++:", sh("g++ --version | head -1"))
libstdcxx = sh("g++ -print-file-name=libstdc++.so.6")
print("g++ libstdc++:", libstdcxx, "->", sh(f"readlink -f {libstdcxx}"))
print("python maps:", sh(f"{sys.executable} -c \"import torch; print(open('/proc/self/maps').read())\" | grep -o '/[^ ]*libstdc++[^ ]*' | sort -u"))

for name, cls, dev in [("plain_cpu", Plain, "cpu"), ("plain", Plain, "cuda"), ("dense", Dense, "cuda")]:
    torch.manual_seed(0)
    model = cls().to(dev).eval()
    x = torch.randn(2, 40, 128, device=dev)
    ep = torch.export.export(model, (x,))
    pkg = torch._inductor.aoti_compile_and_package(ep, package_path=os.path.join(out, f"{name}.pt2"))
    with zipfile.ZipFile(pkg) as z:
        sos = [n for n in z.namelist() if n.endswith(".so")]
        z.extractall(os.path.join(out, name + "_x"))
    for so in sos:
        print(f"  {name}: {so}: needs", sh(f"ldd {os.path.join(out, name + '_x', so)} | grep -E 'stdc|torch_fmha|not found' | tr -s ' \\t' ' '"))
    torch.save({"x": x, "want": model(x)[0]}, os.path.join(out, f"{name}_io.pt"))
    script = textwrap.dedent(f"""
        import torch{', torch_fmha' if name == 'dense' else ''}
        io = torch.load({os.path.join(out, name + '_io.pt')!r})
        runner = torch._inductor.aoti_load_package({pkg!r})
        got = runner(io["x"])
        if got[0].is_cuda: torch.cuda.synchronize()
        print("max err", (got[0] - io["want"]).abs().max().item(), flush=True)
        print("AOTI-OK", flush=True)
    """)
    for preload in ("", libstdcxx):
        env = dict(os.environ)
        if preload:
            env["LD_PRELOAD"] = preload
        res = subprocess.run([sys.executable, "-X", "faulthandler", "-c", script], capture_output=True,
                             text=True, timeout=240, env=env)
        ok = "AOTI-OK" in res.stdout
        print(f"==== {name} LD_PRELOAD={preload or '-'}: {'OK' if ok else f'FAILED rc={res.returncode}'}")
        if not ok:
            print("\n".join((res.stdout + res.stderr).splitlines()[-8:]))
