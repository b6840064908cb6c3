"""tune_collector_for_calls: start-up leaves the collector's reach, later garbage does not."""

import gc
import weakref

import pytest

import voxtrio


class _Node:
    pass


@pytest.fixture
def restored_collector():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_startup_objects_are_frozen_and_later_cycles_still_collected(restored_collector):
    survivor = _Node()
    _, middle, old = gc.get_threshold()
    frozen = voxtrio.tune_collector_for_calls(young_generation=1234)
    assert frozen == gc.get_freeze_count() > 0
    assert not any(o is survivor for o in gc.get_objects())  # out of every generation
    assert gc.get_threshold() == (1234, middle, old)
    # A reference cycle made after start-up is garbage the collector still finds.
    cycle = _Node()
    cycle.self = cycle
    gone = weakref.ref(cycle)
    del cycle
    gc.collect()
    assert gone() is None


@pytest.mark.parametrize("size", [0, -5, 2.5, True, "3000"])
def test_a_young_generation_that_cannot_work_is_refused(restored_collector, size):
    with pytest.raises(ValueError, match="young_generation"):
        voxtrio.tune_collector_for_calls(young_generation=size)
    assert gc.get_freeze_count() == 0
