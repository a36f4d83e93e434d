"""watchlists.coalesce claim/release against the real cache Redis (the script path), and the same
behaviour from the in-process store of embedded mode."""

import pytest

from watchlists import coalesce


@pytest.fixture(params=["redis", "local"])
def store(request, monkeypatch):
    if request.param == "local":
        monkeypatch.setattr(coalesce, "_redis", lambda: None)
        monkeypatch.setattr(coalesce, "_LOCAL", coalesce._LocalStore())
    elif coalesce._redis() is None:
        pytest.skip("the cache is not Redis")
    return request.param


def test_only_the_first_claim_of_a_series_queues_and_spans_widen_until_released(store):
    assert coalesce.claim("t", [1, 2], {1: (100, 200), 2: (50, 60)}) == [1, 2]
    assert coalesce.claim("t", [2, 3], {2: (40, 55), 3: (7, 8)}) == [3]
    assert coalesce.claim("t", [1], {1: (150, 250)}) == []
    assert coalesce.release("t", [1, 2, 3]) == {1: (100, 250), 2: (40, 60), 3: (7, 8)}
    # Released: the next batch queues again, with a fresh span.
    assert coalesce.claim("t", [1], {1: (300, 301)}) == [1]
    assert coalesce.release("t", [1, 4]) == {1: (300, 301), 4: None}


def test_flags_without_spans(store):
    assert coalesce.claim("u", [5, 6]) == [5, 6]
    assert coalesce.claim("u", [6, 7]) == [7]
    assert coalesce.release("u", [5, 6, 7]) == {5: None, 6: None, 7: None}


def test_a_failed_run_puts_its_series_back_without_queueing_another(store):
    assert coalesce.add_pending("d", 9, [1, 2]) is True
    assert coalesce.add_pending("d", 9, [3]) is False  # a run is queued already
    taken = coalesce.take_pending("d", 9)
    assert taken == [1, 2, 3]
    coalesce.restore_pending("d", 9, taken)  # the run failed
    assert coalesce.add_pending("d", 9, [4]) is True  # the next batch queues one run ...
    assert coalesce.take_pending("d", 9) == [1, 2, 3, 4]  # ... which takes them all


@pytest.mark.django_db
def test_run_pending_restores_its_series_when_the_pass_fails(monkeypatch, org_a):
    from detection import pipeline, tasks

    def broken(series_ids, organization_id, max_chunks=None):
        raise RuntimeError("database went away")

    monkeypatch.setattr(pipeline, "run_some", broken)
    coalesce.add_pending(tasks.DETECT, org_a.pk, [11, 12])
    with pytest.raises(RuntimeError):
        tasks.run_pending(org_a.pk)
    assert coalesce.take_pending(tasks.DETECT, org_a.pk) == [11, 12]


def test_spans_a_dead_run_took_are_taken_by_the_next_release(store):
    t0 = 1_700_000_000_123_457  # real µs: bounds must come back exact, not rounded through a double's text
    coalesce.claim("h", [1, 2], {1: (t0, t0 + 10), 2: (t0 + 5, t0 + 6)})
    assert coalesce.release("h", [1, 2], run="a") == {1: (t0, t0 + 10), 2: (t0 + 5, t0 + 6)}
    # Run "a" is killed before finish(). New points arrive for series 1 only.
    coalesce.claim("h", [1], {1: (t0 + 20, t0 + 30)})
    assert coalesce.release("h", [1], run="b") == {1: (t0, t0 + 30)}
    coalesce.finish("h", [1], "b")
    # Series 2 is released again (the dead run's message redelivered): its span is still there.
    assert coalesce.release("h", [2], run="a") == {2: (t0 + 5, t0 + 6)}
    coalesce.finish("h", [2], "a")
    assert coalesce.release("h", [1, 2], run="c") == {1: None, 2: None}


def test_a_finished_run_leaves_nothing_behind(store):
    coalesce.claim("f", [3], {3: (10, 20)})
    assert coalesce.release("f", [3], run="x") == {3: (10, 20)}
    coalesce.finish("f", [3], "x")
    coalesce.claim("f", [3], {3: (50, 60)})
    assert coalesce.release("f", [3], run="y") == {3: (50, 60)}
