"""What the tests share that is not a fixture: helpers, builders and the paths of the checkout.

Fixtures live in the conftest.py nearest the tests that use them (tests/conftest.py for all,
tests/e2e/conftest.py and tests/dashboard/conftest.py for theirs); test modules import only from here.
"""
