"""sst/schemas.py: what the tools write passes the schema its readers check."""
from __future__ import annotations

import json

import torch

from sst import schemas


def test_schemas_accept_what_the_tools_write(finished):
    root, _ = finished
    record = json.loads((root / "res" / "runs" / "sub01_ses1.json").read_text())
    assert schemas.check(record, schemas.RUN_RECORD) is None
    assert schemas.check(torch.load(root / "res" / "checkpoints" / "sub01_ses1.pt", weights_only=False),
                         schemas.CHECKPOINT) is None
    assert schemas.check(json.loads((root / "pre" / "sub01_ses1" / "manifest.json").read_text()),
                         schemas.MANIFEST) is None
