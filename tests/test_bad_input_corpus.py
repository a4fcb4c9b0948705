"""What tests/test_bad_input.py's ``test_case_count`` claims, checked against the real thing.

``test_case_count`` asserts ``len(CASES) >= 40``: the length of the test's own table, which
says nothing about whether the corpus covers "every kind of broken input". Here the
corpus is checked against what the code defines: every error class of ``mefeat.errors``
that a user's input can cause is either a refusal case or the reason behind another kind of
case, every outcome the checker handles occurs, and every case function written in the
module is in the table (none defined and forgotten).
"""

from __future__ import annotations

import inspect
import re

import test_bad_input as bad

from mefeat import errors

# Where the corpus meets each error class a user can cause (mefeat.errors): a whole read
# refused with it (CASES), the store refused with it (STORE_CASES), or a sample recorded as
# failed with its reason (a SampleError subclass: the "failed" cases).
COVERED_BY = {
    errors.AnnotationError: "refusal",
    errors.DatasetLayoutError: "refusal",
    errors.StoreError: "store",
    errors.SampleError: "failed",
    errors.FaceNotFoundError: "failed",
}
NOT_INPUT = {errors.MefeatError, errors.ModelError}  # the base; a model registry error


def test_every_error_class_a_user_can_cause_is_in_the_corpus():
    # A new MefeatError subclass in the library fails here until the corpus says which
    # broken input raises it; a refusal class with no case fails too.
    defined = {c for c in vars(errors).values()
               if inspect.isclass(c) and issubclass(c, errors.MefeatError)}
    assert defined == set(COVERED_BY) | NOT_INPUT, sorted(c.__name__ for c in defined)
    refusals = {o for _, o, _ in bad.CASES if inspect.isclass(o)}
    stores = {e for _, e in bad.STORE_CASES if inspect.isclass(e)}  # None: accepted
    outcomes = {o for _, o, _ in bad.CASES if isinstance(o, str)}
    for cls, where in COVERED_BY.items():
        if where == "refusal":
            assert cls in refusals, cls.__name__
        elif where == "store":
            assert any(issubclass(e, cls) for e in stores), cls.__name__
        else:
            assert where in outcomes, cls.__name__
    # the face stage's own failure is among the failed cases
    assert {"no_face_in_onset", "two_faces"} <= {m.__name__ for m, o, _ in bad.CASES
                                                 if o == "failed"}


def test_every_outcome_the_checker_handles_occurs():
    # The outcomes are read from test_bad_input's own checker (its `outcome == "..."`
    # branches), so a branch added there without a case, or a case kind never exercised,
    # fails here.
    source = inspect.getsource(bad.test_bad_input)
    handled = set(re.findall(r'outcome == "([a-z+]+)"', source))
    handled |= {w for group in re.findall(r"outcome in \(([^)]*)\)", source)
                for w in re.findall(r'"([a-z+]+)"', group)}
    assert handled >= {"done", "failed", "skipped", "done+skipped", "nothing"}
    used = {o for _, o, _ in bad.CASES if isinstance(o, str)}
    assert used == handled, (sorted(handled - used), sorted(used - handled))
    # and the two dataset forms the corpus breaks, the spreadsheet and the manifest
    assert any(m.__name__.startswith("manifest_") for m, _, _ in bad.CASES)
    assert any(not m.__name__.startswith("manifest_") for m, _, _ in bad.CASES)


def test_every_case_function_is_in_the_table():
    # A case function written but never listed is a broken input nobody checks.
    def written(params):
        return {name for name, fn in vars(bad).items()
                if inspect.isfunction(fn) and fn.__module__ == bad.__name__
                and not name.startswith(("test_", "_"))
                and list(inspect.signature(fn).parameters) == params}

    cases = [m.__name__ for m, _, _ in bad.CASES]
    store_cases = [m.__name__ for m, _ in bad.STORE_CASES]
    assert len(set(cases)) == len(cases) and len(set(store_cases)) == len(store_cases)
    assert written(["c"]) == set(cases)
    assert written(["store", "base"]) == set(store_cases)
