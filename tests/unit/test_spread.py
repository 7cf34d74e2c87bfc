"""scenarios.spread: the verifier's one loop that sends requests until every pod it expects has
served (kube-proxy and the MetalLB address pick at random), for requests sent one at a time
(the netns lab) or in batches (the cluster lab's kubectl exec)."""
from itertools import cycle

from podpath.evidence.lab import Http
from podpath.evidence.scenarios import FAILURES_ENOUGH, MAX_TRIES, spread


def served_by(name: str) -> Http:
    return Http(rc=0, status=200, headers={"x-pod": name}, body=f"pod={name}")


def refused() -> Http:
    return Http(rc=7, status=None, error="connection refused")


def asker(answers, batch: int = 1):
    """ASK for spread that hands out ANSWERS BATCH at a time, and counts the requests it sent."""
    source = iter(answers)
    sent = []

    def ask():
        got = [a for _, a in zip(range(batch), source)]
        sent.extend(got)
        return got
    return ask, sent


def by_header(answer: Http) -> str | None:
    return answer.headers.get("x-pod")


def test_it_stops_as_soon_as_every_expected_pod_has_served():
    ask, sent = asker(cycle([served_by("a"), served_by("a"), served_by("b"), served_by("c")]))
    served, failures = spread(ask, by_header, {"a", "b"})
    assert served == {"a": 2, "b": 1}
    assert failures == []
    assert len(sent) == 3


def test_a_pod_that_never_serves_costs_max_tries_requests_and_is_missing():
    ask, sent = asker(cycle([served_by("a")]))
    served, failures = spread(ask, by_header, {"a", "b"})
    assert served == {"a": MAX_TRIES}
    assert len(sent) == MAX_TRIES


def test_failures_stop_it_after_failures_enough_and_say_what_each_got():
    ask, sent = asker(cycle([served_by("a"), refused(), Http(rc=0, status=502)]))
    served, failures = spread(ask, by_header, {"a", "b"})
    assert len(failures) == FAILURES_ENOUGH
    assert failures[:2] == ["connection refused", "HTTP 502"]
    # a, refused, 502, a, refused: the third failure is the fifth request
    assert FAILURES_ENOUGH == 3 and len(sent) == 5


def test_batches_are_read_answer_by_answer_and_count_towards_max_tries():
    ask, sent = asker(cycle([served_by("a")]), batch=10)
    served, _ = spread(ask, lambda a: a.field("pod"), {"a", "b"})
    assert served == {"a": MAX_TRIES}
    assert len(sent) == MAX_TRIES


def test_an_answer_that_names_no_pod_is_counted_as_unknown():
    ask, _ = asker(cycle([Http(rc=0, status=200), served_by("a")]))
    served, _ = spread(ask, by_header, {"a"})
    assert served == {"?": 1, "a": 1}


def test_an_asker_with_nothing_more_to_send_ends_it():
    ask, sent = asker([served_by("a")])
    served, _ = spread(ask, by_header, {"a", "b"})
    assert served == {"a": 1}
    assert len(sent) == 1
