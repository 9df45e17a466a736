"""Every exercise check passes its reference, catches each of its known mistakes with the right hint,
hands back the reference when the exercise is not done, and refuses what is not a function."""

import pytest
import torch

from labkit import check

EXERCISES = {name: ex for name, ex in vars(check).items() if isinstance(ex, check.Exercise)}


def test_there_are_checks():
    assert "entropy" in EXERCISES


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_reference_passes(name, capsys):
    ex = EXERCISES[name]

    def own(*args, **kwargs):  # a correct implementation of the student's own (here: the reference's maths)
        return ex.reference(*args, **kwargs)

    assert ex(own) is own
    out = capsys.readouterr().out
    assert out.startswith(f"✓ {name}") and f"all {len(ex.cases)} cases" in out


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_each_known_mistake_is_caught_with_its_hint(name):
    ex = EXERCISES[name]
    assert ex.mistakes, f"check.{name} must know at least one plausible wrong implementation"
    for hint, wrong in ex.mistakes.items():
        with pytest.raises(check.CheckFailed) as info:
            ex(wrong)
        assert f"Hint: {hint}" in str(info.value), f"{name}: mistake not named correctly:\n{info.value}"


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_not_done_hands_back_the_marked_reference_and_never_a_tick(name, capsys):
    ex = EXERCISES[name]

    def todo(*args, **kwargs):
        raise NotImplementedError()

    handed = ex(todo)
    assert handed.labkit_reference_for == name
    assert "⧗" in capsys.readouterr().out
    ex.run_case(1, handed)  # it computes what the reference computes (raises otherwise)
    again = ex(handed)  # running the check cell again on the handed-back reference
    out = capsys.readouterr().out
    assert again is handed and "still the reference implementation" in out and "✓" not in out
    ex(ex.reference)  # the bare reference is not "your" function either
    out = capsys.readouterr().out
    assert "still the reference implementation" in out and "✓" not in out


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_result_instead_of_function_is_refused(name):
    with pytest.raises(TypeError, match="your function itself"):
        EXERCISES[name](torch.zeros(3))


def test_a_crashing_function_is_reported_with_its_case():
    def crashes(logits):
        return logits.undefined_method()

    with pytest.raises(check.CheckFailed, match=r"raised AttributeError.*\n.*case 1/"):
        check.entropy(crashes)


def test_an_unknown_wrong_answer_gets_the_difference_without_a_hint():
    with pytest.raises(check.CheckFailed) as info:
        check.entropy(lambda logits: check.entropy.reference(logits) + 0.1)
    assert "largest difference 0.1" in str(info.value) and "Hint" not in str(info.value)


def test_a_failure_shows_input_expected_returned_and_how_to_rerun(capsys):
    def off(logits):
        return check.entropy.reference(logits) + 0.1

    with pytest.raises(check.CheckFailed) as info:
        check.entropy(off)
    message = str(info.value)
    assert "input:    (tensor[" in message and "expected: tensor[" in message and "returned: tensor[" in message
    assert "re-run this case: check.entropy.run_case(1, entropy)" in message
    with pytest.raises(check.CheckFailed, match="case 1/"):
        check.entropy.run_case(1, off)

    def right(logits):
        return check.entropy.reference(logits)

    out = check.entropy.run_case(2, right)
    assert torch.is_tensor(out) and "agrees with the reference" in capsys.readouterr().out
    with pytest.raises(ValueError, match="case number between 1 and"):
        check.entropy.run_case(99, right)


def test_wrong_shape_is_named():
    with pytest.raises(check.CheckFailed, match=r"shape \(4, 1\), expected \(4,\)"):
        check.entropy(lambda logits: check.entropy.reference(logits)[..., None])


def test_student_function_cannot_corrupt_the_reference_inputs():
    def in_place(logits):
        out = check.entropy.reference(logits)
        logits.zero_()  # vandalises its own copy only
        return out

    check.entropy(in_place)


def test_strict_mode_fails_an_unfinished_exercise_for_nbgrader(monkeypatch):
    def todo(logits):
        raise NotImplementedError()

    monkeypatch.setenv("LABKIT_STRICT_CHECKS", "1")
    with pytest.raises(check.CheckFailed, match="not done"):
        check.entropy(todo)
    with pytest.raises(check.CheckFailed, match="still the reference"):
        check.entropy(check.entropy.reference)


def test_yours_names_the_reference_while_it_is_lent():
    def entropy(logits):
        raise NotImplementedError()

    lent = check.entropy(entropy)
    assert check.yours(lent) == "the reference entropy (your exercise is not done yet)"

    def entropy(logits):  # noqa: F811  (the student's own, written later)
        return check.entropy.reference(logits)

    assert check.yours(entropy) == "your entropy"
    with pytest.raises(TypeError):
        check.yours(3)


def test_cases_can_be_built_lazily_on_first_use(capsys):
    from labkit.check import Case, CheckFailed, Exercise

    built = []

    def make():
        built.append(1)
        return [Case("two numbers", (2.0, 3.0)), Case("negative", (-1.0, 4.0))]

    ex = Exercise("add", lambda a, b: a + b, make, {"subtract instead of add": lambda a, b: a - b})
    assert built == []  # nothing is built when the check is defined
    ex(lambda a, b: b + a)
    assert built == [1] and "all 2 cases" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="subtract instead of add"):
        ex(lambda a, b: a - b)
    assert built == [1]  # built once


def test_a_check_cell_can_pass_context_to_lazily_built_cases(capsys):
    from labkit.check import Case, Exercise

    seen = []

    def make(scale=None):
        seen.append(scale)
        s = 1.0 if scale is None else scale
        return [Case("scaled", (torch.tensor([s, 2 * s]),))]

    ex = Exercise("double", lambda x: 2 * x, make, {"add instead of multiply": lambda x: x + 2})
    ex(lambda x: x * 2)
    ex(lambda x: x + x, 3.0)  # the notebook's object, e.g. its model
    assert seen == [None, 3.0]
    ex.run_case(1, lambda x: 2 * x)  # keeps the context of the last check
    assert seen == [None, 3.0]
    with pytest.raises(TypeError, match="takes only your function"):
        check.entropy(lambda p: p, 3.0)


def test_models_in_cases_are_shared_not_copied():
    from labkit.check import Case, Exercise

    model = torch.nn.Linear(2, 1)
    ex = Exercise("apply", lambda m, x: m(x).detach(), [Case("a linear layer", (model, torch.ones(1, 2)))],
                  {"forgot the bias": lambda m, x: (x @ m.weight.T).detach()})
    ex(lambda m, x: m(x).detach() + 0)
    got = []
    ex(lambda m, x: got.append(m) or m(x).detach())
    assert got[0] is model
