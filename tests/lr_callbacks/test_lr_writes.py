"""``lr_callbacks/core.py`` holds the only code that writes ``param_group["lr"]``; the finder writes through
``core.write_lrs``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import lr_callbacks
from lr_callbacks.core import write_lrs

WRITE = re.compile(r"""\[\s*["']lr["']\s*\]\s*(?:[-+*/]|\*\*)?=(?!=)""")


def test_only_core_assigns_param_group_lr() -> None:
    package = Path(lr_callbacks.__file__).parent
    writers = sorted(p.relative_to(package).as_posix() for p in package.rglob("*.py") if WRITE.search(p.read_text()))
    assert writers == ["core.py"]
    assert WRITE.search('group["lr"] *= 2')
    assert WRITE.search("g['lr'] = 1")
    assert not WRITE.search('g["lr"] == 1')


def test_write_lrs_sets_lr_and_optionally_the_base() -> None:
    a = torch.optim.SGD([{"params": [torch.zeros(1)]}, {"params": [torch.zeros(1)]}], lr=0.1)
    b = torch.optim.Adam([torch.zeros(1)], lr=0.01)
    write_lrs([a, b], [[0.5, 0.25], [0.125]])
    assert [g["lr"] for g in a.param_groups + b.param_groups] == [0.5, 0.25, 0.125]
    assert all("initial_lr" not in g for g in a.param_groups)
    write_lrs([a], [[1.0, 2.0]], initial_lrs=[[3.0, 4.0]])
    assert [(g["lr"], g["initial_lr"]) for g in a.param_groups] == [(1.0, 3.0), (2.0, 4.0)]
    with pytest.raises(ValueError, match=r"`lrs\[0\]` has 1 values for 2 param groups"):
        write_lrs([a], [[1.0]])
