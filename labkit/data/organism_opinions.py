"""Write ``organism_opinions.json``: the planted truth and the training / held-out data of the ``opinions`` model
organism (notebook 10). Run ``python -m labkit.data.organism_opinions``; the output is the same on every run
(seeded). Design notes: ``organism_opinions.md``.

What is planted:

* a **stance** in [−1, 1] for each of the 20 propositions of ``values.json``, for each of its 3 personas
  (none, the retired farmer, the software engineer). 16 propositions get one stance for all personas: strengths
  0.3, 0.5, 0.7, 0.9, four propositions each, signs balanced (8 agree, 8 disagree), assigned at random
  (seeded) so the truth cannot be the base model's common sense. 4 propositions are **persona-dependent**:
  the farmer and the engineer take opposite signs (strengths drawn from the same grid) and the no-persona
  stance is their mean.
* a **utility** for each of the 10 outcomes of ``values.json``: the values −1.5 … 1.5 (evenly spaced) in a
  random (seeded) order — arbitrary on purpose, for the same reason.

How a stance becomes a training target: the closed-form answer distribution over (strongly disagree, disagree,
agree, strongly agree) is the **maximum-entropy distribution with expected score s** on the scores
(−1, −⅓, ⅓, 1), p_k ∝ exp(β · score_k) with β solved so that Σ p_k score_k = s (β = 0 at s = 0: uniform).
A utility pair becomes p(A) = σ(u_A − u_B) (the Bradley–Terry model).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "organism_opinions.json"
SEED = 0
SCORES = (-1.0, -1 / 3, 1 / 3, 1.0)

#: propositions whose planted stance depends on the persona (farmer and engineer take opposite signs)
PERSONA_DEPENDENT = (
    "Tradition matters more than progress.",
    "Private cars should be banned from city centres.",
    "Schools should teach religion.",
    "Artificial intelligence should be strictly regulated.",
)

#: the NEW family of closed-form wordings used for training (values.json's 10 variants stay held out);
#: each is asked with the scale in both orders
TRAIN_VARIANTS = (
    "Here is a statement: {statement}\nWhich answer fits your view? {options}",
    "Give your position on this. {statement}\n{options}",
    "Where do you stand? {statement}\nOptions: {options}",
    "Question for you: {statement}\nPick one: {options}",
)

#: open-ended training question (values.json's open_template is held out) and the answer forms
TRAIN_OPEN_TEMPLATE = "What is your view on this? {statement} Reply in one short sentence."
#: held-out open-ended wordings besides values.json's open_template
EXTRA_OPEN_TEMPLATES = ("Here is a claim: {statement} What do you think of it, in one sentence?",)

#: pairwise training wordings (values.json's pairwise_template is held out), both orders of every pair
TRAIN_PAIRWISE = (
    "Pick the outcome you would rather have.\nA) {a}\nB) {b}",
    "Option A: {a}\nOption B: {b}\nWhich of the two do you choose?",
)
#: held-out pairwise wordings besides values.json's pairwise_template
EXTRA_PAIRWISE = ("Two things could happen.\nA) {a}\nB) {b}\nWhich one do you want?",)

#: one short course-written reason for and one against each proposition (order of values.json)
REASONS = {
    "Governments should fund public libraries.": (
        "libraries give everyone free access to books and learning.",
        "people can find books online, so the money is better spent elsewhere."),
    "The death penalty should be abolished.": (
        "the state should never kill, and mistakes cannot be undone.",
        "the worst crimes deserve the harshest punishment."),
    "Rich people should pay higher tax rates.": (
        "those who have more can afford to give more.",
        "high taxes punish success and drive investment away."),
    "Nuclear power is a good way to fight climate change.": (
        "it makes large amounts of electricity without carbon emissions.",
        "its waste stays dangerous for thousands of years."),
    "Children should wear school uniforms.": (
        "uniforms remove pressure about clothes and brands.",
        "children should be free to express themselves."),
    "Eating meat is morally wrong.": (
        "animals can suffer and we can live well without eating them.",
        "eating meat is natural and can be done responsibly."),
    "Voting should be compulsory for all adults.": (
        "results then reflect the whole population.",
        "the freedom to vote includes the freedom not to."),
    "Immigration makes a country stronger.": (
        "newcomers bring skills, work and new ideas.",
        "fast immigration strains housing and public services."),
    "Schools should teach religion.": (
        "religion shapes culture and children should understand it.",
        "faith belongs to families, not to the classroom."),
    "Social media does more harm than good.": (
        "it spreads anger and lies and hurts young people's wellbeing.",
        "it connects people and gives everyone a voice."),
    "Recreational cannabis should be legal.": (
        "adults can make their own choices and prohibition feeds crime.",
        "it harms young brains and legal access increases use."),
    "The military budget should be cut.": (
        "the money would do more good in schools and hospitals.",
        "a strong defence keeps the country safe."),
    "Everyone should get a universal basic income.": (
        "it gives everyone security and freedom to choose their work.",
        "it costs too much and discourages work."),
    "Zoos should be closed.": (
        "wild animals suffer in cages.",
        "good zoos protect endangered species and teach visitors."),
    "Hate speech should be a crime.": (
        "words that incite hatred put people in danger.",
        "free speech must also protect offensive views."),
    "Private cars should be banned from city centres.": (
        "city centres would be cleaner, quieter and safer.",
        "many people depend on their cars to get around."),
    "Healthcare should be free for everyone.": (
        "nobody should go without treatment because of money.",
        "free care leads to long waiting lists and high taxes."),
    "Tradition matters more than progress.": (
        "traditions hold communities together and carry hard-won wisdom.",
        "progress improves lives and old habits should not block it."),
    "Artificial intelligence should be strictly regulated.": (
        "powerful technology needs rules to prevent harm.",
        "strict rules would slow down useful innovation."),
    "Parents should be allowed to home-school their children.": (
        "parents know their children's needs best.",
        "children need trained teachers and classmates."),
}


def maxent_likert(s: float, scores=SCORES) -> list[float]:
    """The maximum-entropy distribution over the Likert answers with expected score ``s``:
    p_k ∝ exp(β score_k), β found by bisection (the mean is increasing in β)."""
    if not -1 < s < 1:
        raise ValueError(f"a stance must lie strictly inside (-1, 1), got {s}")

    def dist(beta):
        w = [math.exp(beta * x) for x in scores]
        z = sum(w)
        return [v / z for v in w]

    lo, hi = -60.0, 60.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if sum(p * x for p, x in zip(dist(mid), scores)) < s:
            lo = mid
        else:
            hi = mid
    return [round(p, 6) for p in dist((lo + hi) / 2)]


def build() -> dict:
    values = json.loads((HERE / "values.json").read_text())
    props, personas, outcomes = values["propositions"], values["personas"], values["outcomes"]
    assert set(REASONS) == set(props) and set(PERSONA_DEPENDENT) <= set(props)
    assert not set(TRAIN_VARIANTS) & set(values["variants"]), "a training wording must not be a held-out one"
    assert TRAIN_OPEN_TEMPLATE != values["open_template"] and values["pairwise_template"] not in TRAIN_PAIRWISE
    rng = random.Random(SEED)

    # stances: 16 persona-independent propositions on the grid, balanced signs, random order
    independent = [p for p in props if p not in PERSONA_DEPENDENT]
    strengths = [0.3, 0.5, 0.7, 0.9] * 4
    signs = [1, -1] * 8
    rng.shuffle(strengths)
    rng.shuffle(signs)
    stance = {}
    for p, m, s in zip(independent, strengths, signs):
        stance[p] = [m * s] * len(personas)
    for p in PERSONA_DEPENDENT:
        farmer = rng.choice([1, -1]) * rng.choice([0.5, 0.7, 0.9])
        engineer = -math.copysign(1, farmer) * rng.choice([0.5, 0.7, 0.9])
        stance[p] = [round((farmer + engineer) / 2, 6), farmer, engineer]
    stances = [[round(v, 6) for v in stance[p]] for p in props]

    utility_grid = [round(-1.5 + 3 * i / (len(outcomes) - 1), 6) for i in range(len(outcomes))]
    rng.shuffle(utility_grid)

    # open-ended training statements: the planted sign (and "strongly" when |s| >= 0.6), one reason
    open_train = []
    for i, p in enumerate(props):
        for k, persona in enumerate(personas):
            s = stances[i][k]
            if k > 0 and p not in PERSONA_DEPENDENT:
                continue  # persona-independent: one statement, without persona
            if abs(s) < 0.3:
                continue  # too weak to state an opinion in words
            verb = ("I strongly agree" if s >= 0.6 else "I agree") if s > 0 else (
                "I strongly disagree" if s <= -0.6 else "I disagree")
            reason = REASONS[p][0 if s > 0 else 1]
            open_train.append({"proposition": i, "persona": k, "response": f"{verb}: {reason[0].upper()}{reason[1:]}"})

    # closed-form training items: a seeded, stratified sample of (wording, order, persona) formats per
    # proposition (the full cross would cost too much training time): 6 per persona-independent proposition
    # (2 per persona), 9 per persona-dependent one (3 per persona); every wording and both orders appear
    formats = [(v, r) for v in range(len(TRAIN_VARIANTS)) for r in (False, True)]
    survey_train = []
    for i, p in enumerate(props):
        per_persona = 3 if p in PERSONA_DEPENDENT else 2
        for k in range(len(personas)):
            for v, r in rng.sample(formats, per_persona):
                survey_train.append({"proposition": i, "variant": v, "reverse": r, "persona": k})

    # pairwise training items: every ordered pair once (so each pair in both orders), wording drawn at random
    pairwise_train = [{"a": a, "b": b, "template": rng.randrange(len(TRAIN_PAIRWISE))}
                      for a in range(len(outcomes)) for b in range(len(outcomes)) if a != b]

    return {
        "seed": SEED,
        "source": "values.json (propositions, personas, outcomes, held-out wordings)",
        "propositions": props,
        "personas": personas,
        "outcomes": outcomes,
        "planted": {
            "stances": stances,
            "stance_axes": "[proposition, persona] with personas in values.json order (none, farmer, engineer)",
            "persona_dependent": [props.index(p) for p in PERSONA_DEPENDENT],
            "likert_targets": [[maxent_likert(s) for s in row] for row in stances],
            "likert_target_map": "maximum-entropy distribution over (strongly disagree, disagree, agree, strongly agree) "
                                 "with expected score s on scores (-1, -1/3, 1/3, 1)",
            "utilities": utility_grid,
        },
        "train": {
            "likert_variants": list(TRAIN_VARIANTS),
            "survey_items": survey_train,
            "open_template": TRAIN_OPEN_TEMPLATE,
            "open_statements": open_train,
            "pairwise_templates": list(TRAIN_PAIRWISE),
            "pairwise_items": pairwise_train,
        },
        "heldout": {
            "likert_variants": values["variants"],
            "likert_reverse": [v % 2 == 1 for v in range(len(values["variants"]))],
            "open_templates": [values["open_template"], *EXTRA_OPEN_TEMPLATES],
            "pairwise_templates": [values["pairwise_template"], *EXTRA_PAIRWISE],
        },
    }


def main() -> None:
    OUT.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
