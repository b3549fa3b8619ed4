"""pytest plugin for tests/run_sanitized.py: every hypothesis test runs PSW_SANITIZE_EXAMPLES examples, and the
parametrizations that run only the Python twin (id "python") are left out, as they run no C.

The tests state their counts in @settings(...), which a hypothesis profile cannot override, so the plugin replaces
each collected test's settings with a copy that differs only in max_examples.  Loaded only by that run (-p).
"""
import os

from hypothesis import settings

EXAMPLES = int(os.environ.get("PSW_SANITIZE_EXAMPLES", "15"))


def _twin_only(item):
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "python" in callspec.id.split("-")


def pytest_collection_modifyitems(config, items):
    twin_only = [item for item in items if _twin_only(item)]
    if twin_only:
        config.hook.pytest_deselected(items=twin_only)
        items[:] = [item for item in items if not _twin_only(item)]
    for item in items:
        test = getattr(item, "obj", None)
        # Where @given keeps the settings that @settings(...) gave the test (hypothesis's own attribute).
        current = getattr(test, "_hypothesis_internal_use_settings", None)
        if current is not None and getattr(test, "is_hypothesis_test", False):
            test._hypothesis_internal_use_settings = settings(current, max_examples=min(EXAMPLES,
                                                                                        current.max_examples))
