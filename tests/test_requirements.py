"""requirements.txt: the lower bounds cover the newest APIs the code uses."""
from __future__ import annotations

import re

import torch

from conftest import ROOT


def requirement(name: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(rf"{name}>=([\d.]+)", line)
        if match:
            return match[1]
    raise AssertionError(f"no lower bound for {name} in requirements.txt")


def version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.match(r"[\d.]+", text)[0].rstrip(".").split("."))


# The newest torch API the code relies on, where: fastcpu's autocast decorators take device_type from 2.4
# (torch.amp.custom_fwd), optim.adam's fused Adam runs on the CPU from 2.4. An older torch is not installable
# here, so the bound is checked against this list and the installed torch, not run.
NEWEST_APIS = {("sst/training/fastcpu.py", "torch.amp.custom_fwd(forward, device_type="): "2.4",
               ("sst/training/optim.py", "fused=True"): "2.4"}


def test_the_torch_lower_bound_covers_the_apis_the_code_uses():
    bound = version(requirement("torch"))
    for (file, api), since in NEWEST_APIS.items():
        assert api in (ROOT / file).read_text(), f"{file} no longer uses {api}: update NEWEST_APIS"
        assert bound >= version(since), f"{file} uses {api} (torch {since}), requirements.txt says torch>={bound}"
    assert version(torch.__version__) >= bound
