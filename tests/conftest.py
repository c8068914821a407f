"""Shared test setup: scikit-learn reads California Housing offline from the data kept beside the project,
unless the caller says otherwise."""

import os

from tests.helpers.paths import SHARED_DATA

if "SCIKIT_LEARN_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["SCIKIT_LEARN_DATA"] = str(SHARED_DATA)
