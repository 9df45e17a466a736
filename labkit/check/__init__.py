"""Checks that follow every exercise.

Each exercise asks the student to write a function; the cell after it hands that function to a check::

    entropy = check.entropy(entropy)

The check runs the student's function on several cases (edge cases included) and compares it with the
reference implementation:

* all cases agree → it prints one line starting with ``✓`` and returns the student's function;
* a case disagrees → it raises :class:`CheckFailed` with a hint. Hints come from *known mistakes*:
  each check carries small wrong implementations (a missing minus sign, log base 2, the wrong axis …);
  when the student's output matches one of them, the hint names that mistake;
* the function still raises ``NotImplementedError`` (the exercise is not done yet) → it says so (``⧗``) and
  returns the reference implementation, marked as such, so the rest of the notebook runs; checking that
  reference again says "still the reference implementation", never ``✓``;
* a failure shows the case's input, the expected and the returned values (abbreviated) and the one line that
  re-runs that case, e.g. ``check.entropy.run_case(3, entropy)``.

Adding a check for a new exercise means writing its reference, its cases and its known mistakes, and
one test that the check passes the reference and catches every known mistake (``tests/test_check.py`` finds every check by itself).

The checks of notebook NN live in ``labkit/check/nbNN_<name>.py`` and are all available here as
``check.<exercise name>``.
"""

from ._machinery import Case, CheckFailed, Exercise, run, yours  # noqa: F401
from .nb00_start_here import *  # noqa: F401,F403
from .nb01_feature_attribution import *  # noqa: F401,F403
from .nb02_counterfactuals import *  # noqa: F401,F403
from .nb03_concepts import *  # noqa: F401,F403
from .nb04_data_attribution import *  # noqa: F401,F403
from .nb05_explaining_llms import *  # noqa: F401,F403
from .nb06_representation_engineering import *  # noqa: F401,F403
from .nb07_sae_and_circuits import *  # noqa: F401,F403
from .nb08_causal_mediation import *  # noqa: F401,F403
from .nb09_bias_in_representations import *  # noqa: F401,F403
from .nb10_values_and_opinions import *  # noqa: F401,F403
from .nb11_reward_models_rlhf import *  # noqa: F401,F403
from .nb12_dpo import *  # noqa: F401,F403
from .nb13_pluralistic_alignment import *  # noqa: F401,F403
from .nb14_constitutional_ai import *  # noqa: F401,F403
from .nb15_datasheets import *  # noqa: F401,F403
from .nb16_circuits import *  # noqa: F401,F403
