"""Claims as data: a study declares its planned contrasts; anglesim tests them.

A :class:`Contrast` names what is compared (two arms of the grid, or an arm against a fixed
value or a law's prediction), on which measure, paired or not, in which cells (expanding over
axes), on which scale and in which direction the claim goes. :func:`evaluate_claims` gives
one :class:`ClaimRecord` per family member: n, estimate, 95% t interval, p, Holm-adjusted p
over the declared family, minimum detectable effect at the given power, and a verdict
(supported, contradicted, unresolved; exploratory contrasts stand apart, unadjusted).
:func:`claims_table` renders the records for the results page (RST) or a summary (text).

Storage: the records live in the Dataset attribute ``claims`` (:func:`claims_to_attrs`,
:func:`claims_from_dataset`), a list of dicts that :mod:`anglesim.io` writes as JSON text. An
attribute rather than ``claim_*`` variables on a ``claim`` dimension because a record mixes
strings, selections (dicts), counts and optional numbers, shares no dimension with the data,
and is read as a whole; the attribute is covered by the file's checksum like the data.

The rules (which test, which p, the MDE formula, the verdict) are stated in the user guide,
``docs/user_guide/claims.rst``.
"""

from ._contrast import DIRECTIONS, SCALES, Contrast
from ._evaluate import evaluate_claims
from ._records import CLAIMS_ATTR, VERDICTS, ClaimRecord, claims_from_dataset, claims_to_attrs
from ._render import claims_table
from ._statistics import detection_power, holm, minimum_detectable_effect

__all__ = [
    "CLAIMS_ATTR",
    "DIRECTIONS",
    "SCALES",
    "VERDICTS",
    "ClaimRecord",
    "Contrast",
    "claims_from_dataset",
    "claims_table",
    "claims_to_attrs",
    "detection_power",
    "evaluate_claims",
    "holm",
    "minimum_detectable_effect",
]
