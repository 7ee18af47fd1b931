"""Edge, adversarial and negative cases from a spec; preference pairs with a validity proof; gap filling.

>>> from curate.spec import load_spec
>>> from curate.expand import expand, write_outputs, check_pairs_file
>>> res = expand(load_spec("specs/support-triage"), seed=7, fill_gaps=True)   # doctest: +SKIP
>>> write_outputs(res, "out/expand")                                            # doctest: +SKIP
>>> check_pairs_file(load_spec("specs/support-triage"), "out/expand/pairs.jsonl").ok   # doctest: +SKIP
True
"""

from curate.expand.generate import ExpandResult, expand, write_outputs
from curate.expand.mutators import Mutant, mutate
from curate.expand.pairs import PairsReport, check_pairs_file, pair_problems

__all__ = [
    "ExpandResult",
    "Mutant",
    "PairsReport",
    "check_pairs_file",
    "expand",
    "mutate",
    "pair_problems",
    "write_outputs",
]
