"""What several test files need, in one place: records, tones, demo corpus builds.

tests/ is on ``sys.path`` when pytest runs (its conftest.py sits there without an ``__init__.py``),
so test files import these as ``from helpers.records import make_record``. Nothing here is shipped:
it only makes test inputs, and imports pytest nowhere.
"""
