"""The course in one place: where it is published, its notebooks, and the links to open them.

Everything that names the repository (Colab and Binder links in the README and in every title cell, the
pinned install on Colab) is generated from the constants here by ``python -m tools stamp``. A fork
changes ``REPOSITORY`` (and ``REF`` for a release tag), runs the stamp command, and every link follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from labkit import __version__

#: GitHub ``owner/name`` of the course repository.
REPOSITORY = "trustworthy-dl/lab-notebooks"
#: The pip distribution name of labkit (PyPI's "labkit" is an unrelated project: never `pip install labkit`).
DISTRIBUTION = "trustworthy-dl-labkit"
#: The git ref that links and the Colab install point to: the release tag of this labkit version.
REF = f"v{__version__}"


@dataclass(frozen=True)
class Notebook:
    number: str
    slug: str
    title: str
    part: str
    topic: str

    @property
    def filename(self) -> str:
        return f"{self.number}_{self.slug}.ipynb"


PARTS = {
    "0": "Start",
    "A": "Explaining predictions",
    "B": "Looking inside language models",
    "C": "Bias and values",
    "D": "Aligning to human preferences",
    "E": "Responsible data",
}

NOTEBOOKS = [
    Notebook("00", "start_here", "Start here", "0", "running the course, a tour of labkit, how exercises work"),
    Notebook("01", "feature_attribution", "Feature attribution and how to evaluate it", "A",
             "captum attributions, deletion/insertion, sanity checks, certified stability (MuS)"),
    Notebook("02", "counterfactuals", "Counterfactual explanations and recourse", "A",
             "Wachter counterfactuals, least-cost recourse as an ILP, visual counterfactuals"),
    Notebook("03", "concepts", "Concepts: concept bottleneck models and TCAV", "A",
             "CBMs and test-time intervention, TCAV with significance, label-free CBMs"),
    Notebook("04", "data_attribution", "Training-data attribution: influence functions and datamodels", "A",
             "influence functions vs leave-one-out, TracIn, datamodels, TRAK"),
    Notebook("05", "explaining_llms", "Explaining language-model behaviour", "B",
             "token attributions, probes, neuron explanations, in-context learning, uncertainty"),
    Notebook("06", "representation_engineering", "Representation engineering: reading and steering", "B",
             "reading vectors, activation addition, dose-response"),
    Notebook("07", "sae_and_circuits", "Sparse autoencoders and circuits", "B",
             "superposition, SAEs, attribution patching vs activation patching"),
    Notebook("08", "causal_mediation", "Causal mediation analysis of gender bias", "B",
             "total, direct and indirect effects of neurons and heads (Vig et al. 2020)"),
    Notebook("09", "bias_in_representations", "Bias in learned representations", "C",
             "shortcut learning, WEAT/SEAT, stereotypes, position bias, contextual calibration"),
    Notebook("10", "values_and_opinions", "Values and opinions of language models", "C",
             "survey elicitation, prompt sensitivity, tropes, utilities"),
    Notebook("11", "reward_models_rlhf", "Reward models and RLHF", "D",
             "Bradley-Terry reward models, KL-regularised optimum, best-of-n, over-optimisation, on-policy RLOO and PPO"),
    Notebook("12", "dpo", "Direct Preference Optimization", "D",
             "DPO derivation, tabular ground truth, LoRA DPO on SmolLM2, likelihood displacement"),
    Notebook("13", "pluralistic_alignment", "Diverse preferences and pluralistic alignment", "D",
             "EM over annotator groups, MaxMin policies, Overton/steerable/distributional pluralism"),
    Notebook("14", "constitutional_ai", "RL from AI feedback and Constitutional AI", "D",
             "critique and revision, AI judges and their biases, collective constitutions"),
    Notebook("15", "datasheets", "Datasheets for datasets", "E",
             "the Gebru et al. questions, a datasheet form, automatic data audits"),
    Notebook("16", "circuits", "Circuits: induction heads and indirect-object identification", "B",
             "induction and previous-token heads, IOI, head and path patching, faithfulness and minimality"),
]
BY_NUMBER = {nb.number: nb for nb in NOTEBOOKS}


def colab_url(path: str) -> str:
    """Open ``path`` (relative to the repository root, e.g. ``notebooks/00_start_here.ipynb``) in Colab."""
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/{REF}/{path}"


def binder_url(path: str) -> str:
    """Open ``path`` in JupyterLab on Binder."""
    return f"https://mybinder.org/v2/gh/{REPOSITORY}/{REF}?labpath={quote(path, safe='')}"


def install_spec() -> str:
    """The pip requirement that installs this exact labkit release on Colab."""
    return f"{DISTRIBUTION} @ git+https://github.com/{REPOSITORY}@{REF}"


COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"


def badges(path: str) -> str:
    return f"[![Open in Colab]({COLAB_BADGE})]({colab_url(path)}) [![Launch on Binder]({BINDER_BADGE})]({binder_url(path)})"


#: Every exercise, by the name of its check: (difficulty 1–3, minutes a student needs). Difficulty 1 applies a
#: formula the notebook gives; 2 turns a described method into code of a few lines; 3 is an algorithm with
#: choices to make (a loop, a search, a solver). The difficulty is also the exercise's nbgrader points.
EXERCISE_LEVELS: dict[str, tuple[int, int]] = {
    "entropy": (1, 10),
    "deletion_auc": (2, 20), "mus_predict": (2, 15), "certified_radius": (1, 10),
    "step_bounds": (2, 20), "greedy_edits": (3, 35),
    "intervene": (1, 10), "conceptual_sensitivity": (2, 20),
    "conjugate_gradient": (3, 35), "lds": (1, 15),
    "leave_one_out": (2, 15), "probe_scores": (3, 30), "ece": (2, 20),
    "reading_vector": (2, 20), "add_steering": (1, 10),
    "sae_loss": (1, 10), "attribution_estimate": (1, 10),
    "total_effect": (1, 10), "natural_indirect_effect": (1, 5), "set_neurons": (2, 20),
    "weat_effect_size": (2, 15), "weat_p_value": (2, 25), "position_bias": (1, 10),
    "aggregate_stances": (1, 15), "fit_bradley_terry": (3, 35),
    "bt_loss": (1, 10), "kl_regularised_policy": (1, 10), "rloo_advantages": (1, 10),
    "dpo_loss": (1, 10), "sequence_logprobs": (2, 15),
    "e_step": (1, 10), "maxmin_grid": (2, 20), "js_distance": (2, 15),
    "build_prompt": (2, 15), "group_consensus": (2, 15),
    "missing_values": (1, 10), "near_duplicate_pairs": (2, 15),
    # "implement it yourself" exercises (issue 17), one line per notebook
    "integrated_gradients": (2, 30),  # 01
    "wachter_counterfactual": (3, 30),  # 02
    "tcav_significance": (3, 30),  # 03
    "influence_hvp": (3, 35),  # 04
    "probe_selectivity": (2, 25),  # 05
    "steered_scores": (2, 25),  # 06
    "sae_train_loop": (3, 35),  # 07
    "neuron_nie": (2, 25),  # 08
    "seat_test": (2, 25),  # 09
    "option_scores": (2, 25),  # 10
    "reward_model_step": (2, 30),  # 11
    "dpo_train_step": (2, 20),  # 12
    "em_groups": (3, 35),  # 13
    "critique_revision": (2, 25),  # 14
    "dpo_pairs": (1, 10),  # 14 (issue 19: the RL-CAI pairs)
    "label_gaps": (2, 20),  # 15
    "induction_score": (1, 15), "receiver_edit": (2, 20),  # 16 (issue 20)
}

