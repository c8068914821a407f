"""Where the tests find the repository and the offline copy of scikit-learn's data kept beside it."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
#: California Housing, read offline by scikit-learn's loader (``SCIKIT_LEARN_DATA``) when it lies beside the project
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "scikit_learn_data"
