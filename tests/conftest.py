"""Shared test setup: the tiny Lightning helpers in ``tests/tiny.py`` import as ``tiny``."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# California Housing is read offline from the data kept beside the project unless the caller says otherwise.
_SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scikit_learn_data"
if "SCIKIT_LEARN_DATA" not in os.environ and _SHARED_DATA.is_dir():
    os.environ["SCIKIT_LEARN_DATA"] = str(_SHARED_DATA)
