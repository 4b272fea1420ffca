"""The validation split held out of a training list (benchmarks without one): every tenth record of each class."""

from __future__ import annotations

from collections import Counter

from avlearn.data.pipelines.clips import holdout
from avlearn.data.schema import Record


def _records(n: int, classes: int) -> list[Record]:
    """ESC-50-like: the list cycles through the classes (record i has class i % classes)."""
    return [Record(f"{i}-A-{i % classes}", f"m{i}", "train", {"label": i % classes}, "list", (i % classes,))
            for i in range(n)]  # fmt: skip


def test_a_list_cycling_through_the_classes_gives_every_class_a_tenth():
    records = _records(300, 10)  # every tenth record of this list would all be class 9
    train, val = holdout(records)
    assert Counter(r.classes[0] for r in val) == dict.fromkeys(range(10), 3)
    assert Counter(r.classes[0] for r in train) == dict.fromkeys(range(10), 27)
    assert [r.id for r in train] == [r.id for r in records if r not in val]  # list order kept


def test_the_held_out_records_do_not_depend_on_the_list_order():
    records = _records(120, 4)
    _, val = holdout(records)
    _, val_reversed = holdout(records[::-1])
    assert {r.id for r in val} == {r.id for r in val_reversed} and len(val) == 12


def test_multi_label_records_form_one_group_and_small_lists_still_validate():
    multi = [Record(f"c{i}", f"m{i}", "train", {}, "list", (0, 1)) for i in range(40)]
    train, val = holdout(multi)
    assert len(val) == 4 and len(train) == 36
    small = _records(30, 10)  # three records a class: every tenth of the whole list (checksum order)
    train, val = holdout(small)
    assert len(val) == 3 and len(train) == 27
    few = _records(5, 3)
    assert holdout(few) == (few[:4], few[4:])
