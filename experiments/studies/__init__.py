"""The seed studies of the reproduction, one module each; ``STUDIES`` maps a study's key to its class."""

from experiments.studies.base import Context, Study
from experiments.studies.continual import ContinualStudy
from experiments.studies.housing import HousingStudy
from experiments.studies.linear_alternating import LinearAlternatingStudy
from experiments.studies.tutorial import TutorialStudy
from experiments.studies.xor_alternating import XORAlternatingStudy
from experiments.studies.xor_schedulers import XORSchedulersStudy

#: key -> study class, in report order
STUDIES: dict[str, type[Study]] = {
    cls.key: cls
    for cls in (
        LinearAlternatingStudy,
        XORAlternatingStudy,
        ContinualStudy,
        HousingStudy,
        XORSchedulersStudy,
        TutorialStudy,
    )
}

__all__ = ["STUDIES", "Context", "Study"]
